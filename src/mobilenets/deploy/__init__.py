"""Deployment: `export` writes a model for inference (batch norm folded) as ONNX, TorchScript or torch.export
(pt2), and with `int8=True` quantizes the ONNX graph and reports int8 against fp32; quantization-aware
fine-tuning before it; a CPU benchmark."""

from .export import FORMATS, OPSET, export_graph, fold_batchnorm
from .pipeline import Exported, Int8Report, ReportImages, export
from .qat import finetune_for_int8
from .quantize import FLOAT_GROUPS, calibration_batches, choose_weight_range, quantize

__all__ = ["FLOAT_GROUPS", "FORMATS", "OPSET", "Exported", "Int8Report", "ReportImages", "calibration_batches",
           "choose_weight_range", "export", "export_graph", "finetune_for_int8", "fold_batchnorm", "quantize"]
