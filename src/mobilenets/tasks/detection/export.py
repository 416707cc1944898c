"""A trained detector as ONNX or an ExecuTorch program: the network (batch norm folded) with its three stride-4
outputs; decoding stays a documented post-processing step (`decode`, then `boxes_to_original`), as it is cheap and
easy to change."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ..._atomic import writable
from ...data.transforms import normalise
from ...deploy.executorch import export_pte
from ...deploy.formats import check_request
from ...deploy.quantize import FLOAT_GROUPS, calibration_batches
from .checkpoint import TASK, Detector
from .synthetic import SyntheticDetection
from .transforms import letterbox

OUTPUT_NAMES = ["heatmap", "size", "offset"]


def _builtin_images(size: int):
    def images(split: str, count: int) -> Iterator[Image.Image]:
        data = SyntheticDetection(split, size=size, length=count)
        return (data[i][0] for i in range(len(data)))
    return images


def export_detector(detector: Detector, output: str | Path, *, format: str = "onnx", dynamic_batch: bool = False,
                    int8: bool = False, calibration: str | Path | None = None,
                    keep_float: Iterable[str] | None = None) -> Path:
    """Write the detector at its training input size in `format` (`deploy.list_formats`; an ExecuTorch program is
    a `.pte` for batch 1 on XNNPACK; `int8` calibrated on `calibration`, a folder of images, default the built-in
    set, `keep_float` as for `export_pte`), with class names, category ids and the input protocol (letterbox to
    image_size, ImageNet mean/std) in the metadata."""
    row = check_request(format, TASK, output, int8=int8, dynamic_batch=dynamic_batch, calibration=calibration,
                        keep_float=keep_float)
    writable(output, keeping=[detector.source] if detector.source else [])
    if "classifier" in (keep_float or ()):
        groups = ", ".join(g for g in FLOAT_GROUPS if g != "classifier")
        raise ValueError(f"keep_float: a detector has no classifier (its groups: {groups})")
    metadata = {"task": TASK, "classes": detector.classes, "category_ids": detector.category_ids,
                "image_size": detector.image_size, "model": detector.model.config,
                "train_config": detector.meta.get("train_config", {}),
                "preprocess": "letterbox: longer side to image_size, pad right/bottom with the ImageNet mean; "
                              "normalise with ImageNet mean and std",
                "outputs": "heatmap logits [B,K,h,w], size (w,h) and offset (x,y) [B,2,h,w] at stride 4"}
    if not int8:
        return row.write(detector.model, output, resolution=detector.image_size, dynamic_batch=dynamic_batch,
                         metadata=metadata, output_names=OUTPUT_NAMES)
    return export_pte(detector.model, output, resolution=detector.image_size, metadata=metadata,
                      calibration=detector_calibration(detector.image_size, calibration), keep_float=keep_float)


def detector_calibration(size: int, folder: str | Path | None = None) -> Iterator[np.ndarray]:
    """Batches of 64 images from `folder` (default: the built-in set) letterboxed to `size` and normalised as
    the detector sees them: what int8 calibrates on."""
    return calibration_batches(folder, None, images=64, batch_size=8,
                               transform=lambda image: normalise(letterbox(image, size)[0]),
                               builtin=_builtin_images(size))
