"""Deployment: inference graphs with batch norm folded, exported to ONNX, TorchScript or torch.export (pt2),
and int8 quantization of the ONNX graph."""

from .export import FORMATS, OPSET, export, fold_batchnorm
from .quantize import FLOAT_GROUPS, calibration_batches, quantize

__all__ = ["FLOAT_GROUPS", "FORMATS", "OPSET", "calibration_batches", "export", "fold_batchnorm", "quantize"]
