"""Deployment: inference graphs with batch norm folded, exported to ONNX, TorchScript or torch.export (pt2),
int8 quantization of the ONNX graph (`export_int8`: the whole pipeline with its report), and quantization-aware
fine-tuning before it."""

from .export import FORMATS, OPSET, export, fold_batchnorm
from .int8 import Int8Report, ReportImages, export_int8
from .qat import finetune_for_int8
from .quantize import FLOAT_GROUPS, calibration_batches, choose_weight_range, quantize

__all__ = ["FLOAT_GROUPS", "FORMATS", "OPSET", "Int8Report", "ReportImages", "calibration_batches",
           "choose_weight_range", "export", "export_int8", "finetune_for_int8", "fold_batchnorm", "quantize"]
