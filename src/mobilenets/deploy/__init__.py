"""Deployment: `export` writes a model for inference (batch norm folded) as ONNX, TorchScript, torch.export (pt2)
or an ExecuTorch program (`.pte` on XNNPACK), and with `int8=True` quantizes it and reports int8 against fp32;
quantization-aware fine-tuning before it; `load_exported` runs an exported file; `list_formats`, the formats'
table; a CPU benchmark."""

from .executorch import export_pte
from .export import OPSET, export_graph, fold_batchnorm
from .formats import FORMATS, ExportFormat, check_request, get_format, list_formats, load_exported, register_format
from .pipeline import Exported, Int8Report, ReportImages, export
from .qat import finetune_for_int8
from .quantize import FLOAT_GROUPS, calibration_batches, choose_weight_range, quantize
from .runtime import ExportedModel

__all__ = ["FLOAT_GROUPS", "FORMATS", "OPSET", "ExportFormat", "Exported", "ExportedModel", "Int8Report",
           "ReportImages", "calibration_batches", "check_request", "choose_weight_range", "export", "export_graph",
           "export_pte", "finetune_for_int8", "fold_batchnorm", "get_format", "list_formats", "load_exported",
           "quantize", "register_format"]
