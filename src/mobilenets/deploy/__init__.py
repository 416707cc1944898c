"""Deployment: `export` writes a model for inference (batch norm folded) as ONNX, TorchScript, torch.export (pt2)
or an ExecuTorch program (`.pte` on XNNPACK), and with `int8=True` quantizes it and reports int8 against fp32;
quantization-aware fine-tuning before it; `load_exported` runs an exported file; a CPU benchmark."""

from .executorch import export_pte
from .export import FORMATS, OPSET, export_graph, fold_batchnorm
from .pipeline import Exported, Int8Report, ReportImages, export
from .qat import finetune_for_int8
from .quantize import FLOAT_GROUPS, calibration_batches, choose_weight_range, quantize
from .runtime import ExportedModel, load_exported

__all__ = ["FLOAT_GROUPS", "FORMATS", "OPSET", "Exported", "ExportedModel", "Int8Report", "ReportImages",
           "calibration_batches", "choose_weight_range", "export", "export_graph", "export_pte", "finetune_for_int8",
           "fold_batchnorm", "load_exported", "quantize"]
