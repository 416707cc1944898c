"""Deployment: inference graphs with batch norm folded, exported to ONNX, TorchScript or torch.export (pt2),
int8 quantization of the ONNX graph, and quantization-aware fine-tuning before it."""

from .export import FORMATS, OPSET, export, fold_batchnorm
from .qat import finetune_for_int8
from .quantize import FLOAT_GROUPS, calibration_batches, choose_weight_range, quantize

__all__ = ["FLOAT_GROUPS", "FORMATS", "OPSET", "calibration_batches", "choose_weight_range", "export",
           "finetune_for_int8", "fold_batchnorm", "quantize"]
