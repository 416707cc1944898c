"""A trained detector as ONNX: the network (batch norm folded) with its three stride-4 outputs; decoding stays a
documented post-processing step (`decode`, then `boxes_to_original`), as it is cheap and easy to change."""

from __future__ import annotations

from pathlib import Path

from ..deploy.export import export_graph
from .checkpoint import Detector

OUTPUT_NAMES = ["heatmap", "size", "offset"]


def export_detector(detector: Detector, output: str | Path, *, dynamic_batch: bool = False) -> Path:
    """Write the detector as ONNX at its training input size, with class names, category ids and the input
    protocol (letterbox to image_size, ImageNet mean/std) in the metadata."""
    metadata = {"classes": detector.classes, "category_ids": detector.category_ids,
                "image_size": detector.image_size, "model": detector.model.config,
                "preprocess": "letterbox: longer side to image_size, pad right/bottom with the ImageNet mean; "
                              "normalise with ImageNet mean and std",
                "outputs": "heatmap logits [B,K,h,w], size (w,h) and offset (x,y) [B,2,h,w] at stride 4"}
    return export_graph(detector.model, "onnx", output, resolution=detector.image_size, dynamic_batch=dynamic_batch,
                  metadata=metadata, output_names=OUTPUT_NAMES)
