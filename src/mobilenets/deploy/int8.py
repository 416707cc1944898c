"""The int8 pipeline as one call: optional quantization-aware fine-tuning, the fp32 ONNX export, onnxruntime's
static quantization calibrated on images, and a report of int8 against fp32 (agreement, accuracy with labels,
batch-1 latency) so that a slower or less faithful int8 model is seen before it ships."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..data.transforms import Preprocess, default_preprocess
from .export import export
from .qat import finetune_for_int8
from .quantize import WeightRange, calibration_batches, choose_weight_range, compare, quantize


@dataclass
class ReportImages:
    """Preprocessed NCHW images to compare int8 with fp32 on, their labels if known, and what they are."""

    images: np.ndarray
    labels: np.ndarray | None
    description: str


@dataclass
class Int8Report:
    """Where the int8 model went, its weights' range, and how it compares with the fp32 export."""

    path: Path
    weights: WeightRange
    images: str
    agreement: float
    fp32_ms: float
    int8_ms: float
    fp32_top1: float | None = None
    int8_top1: float | None = None

    @property
    def faster(self) -> bool:
        return self.int8_ms < self.fp32_ms


def export_int8(model: nn.Module, output: str | Path, *, resolution: int = 224, preprocess: Preprocess | None = None,
                calibration: str | Path | None = None, report: ReportImages | None = None,
                qat_loader: Iterable | None = None, qat_epochs: int = 0, keep_float: Iterable[str] = (),
                reduce_range: bool | None = None, dynamic_batch: bool = False,
                metadata: dict[str, Any] | None = None) -> Int8Report:
    """Write `model` as an int8 ONNX model at `output` and compare it with its fp32 export.

    `calibration`: a folder of images (default: the built-in shapes), preprocessed as `preprocess` says (default:
    ImageNet's at `resolution`). `report`: the images to compare on (default: 64 unlabelled built-in shapes).
    `qat_epochs` > 0 first fine-tunes on `qat_loader` with int8 simulated. `keep_float`, `reduce_range`: as in
    `quantize`.
    """
    if qat_epochs < 0:
        raise ValueError(f"qat_epochs must be 0 or more, got {qat_epochs}")
    if qat_epochs and qat_loader is None:
        raise ValueError("qat_epochs needs training data (qat_loader)")
    if preprocess is None or preprocess.image_size != resolution:
        preprocess = default_preprocess(resolution)
    weights = choose_weight_range(reduce_range)
    if qat_epochs:
        model = finetune_for_int8(model, qat_loader, epochs=qat_epochs, reduce_range=reduce_range)
    if report is None:
        images = np.concatenate(list(calibration_batches(None, preprocess, images=64, split="val")))
        report = ReportImages(images, None, "64 built-in validation images (no labels)")
    with tempfile.TemporaryDirectory() as work:
        fp32 = export(model, "onnx", Path(work) / "fp32.onnx", resolution=resolution, dynamic_batch=dynamic_batch,
                      metadata=metadata)
        path = quantize(fp32, output, calibration_batches(calibration, preprocess), keep_float=keep_float,
                        reduce_range=reduce_range)
        compared = compare(fp32, path, report.images, report.labels)
    return Int8Report(path, weights, report.description, compared["agreement"], compared["fp32_ms"],
                      compared["int8_ms"], compared.get("fp32_top1"), compared.get("int8_top1"))
