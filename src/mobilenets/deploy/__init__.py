"""Deployment: inference graphs with batch norm folded, exported to ONNX, TorchScript or torch.export (pt2),
and int8 quantization of the ONNX graph."""

from .export import FORMATS, OPSET, export, fold_batchnorm
from .quantize import KEEP_FLOAT, calibration_batches, quantize

__all__ = ["FORMATS", "KEEP_FLOAT", "OPSET", "calibration_batches", "export", "fold_batchnorm", "quantize"]
