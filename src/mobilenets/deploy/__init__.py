"""Deployment: inference graphs with batch norm folded, exported to ONNX, TorchScript or torch.export (pt2)."""

from .export import FORMATS, OPSET, export, fold_batchnorm

__all__ = ["FORMATS", "OPSET", "export", "fold_batchnorm"]
