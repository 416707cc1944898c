"""`export`: a model for inference in one call. The graph (batch norm folded) as ONNX, TorchScript, pt2 or an
ExecuTorch program; with `int8`, first quantization-aware fine-tuning if asked, then static quantization
calibrated on images (onnxruntime's, or PT2E's for XNNPACK), and a report of int8 against fp32 (agreement,
accuracy with labels, batch-1 latency), so that a slower or less faithful int8 model is seen before it ships."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from torch import nn

from .._atomic import writable
from ..data.transforms import Preprocess, default_preprocess
from .executorch import choose_float_groups, export_pte
from .export import export_graph
from .formats import check_request, load_exported
from .qat import finetune_for_int8
from .quantize import (
    FloatGroups,
    WeightRange,
    calibration_batches,
    checked_groups,
    choose_weight_range,
    compare,
    quantize,
)


class ReportImages(NamedTuple):
    """Preprocessed NCHW images to compare int8 with fp32 on, their labels if known, and what they are."""

    images: np.ndarray
    labels: np.ndarray | None
    description: str


@dataclass
class Int8Report:
    """The int8 weights' range, and how the int8 model compares with the fp32 export."""

    weights: WeightRange
    float_groups: FloatGroups
    images: str
    agreement: float
    fp32_ms: float
    int8_ms: float
    fp32_top1: float | None = None
    int8_top1: float | None = None


@dataclass
class Exported:
    """The written file, its input size, and for int8 the comparison with fp32."""

    path: Path
    resolution: int
    int8: Int8Report | None = None


def export(model: nn.Module, format: str, output: str | Path, *, resolution: int = 224, dynamic_batch: bool = False,
           metadata: dict[str, Any] | None = None, output_names: list[str] | None = None, int8: bool = False,
           preprocess: Preprocess | None = None, calibration: str | Path | None = None,
           report: ReportImages | None = None, qat_loader: Iterable | None = None, qat_epochs: int = 0,
           keep_float: Iterable[str] | None = None, reduce_range: bool | None = None,
           task: str = "classification") -> Exported:
    """Write `model` (BN folded, eval mode) as `format` to `output`: 'onnx', 'torchscript', 'pt2', or 'executorch'
    (a `.pte` for batch 1 lowered to XNNPACK, its metadata in `<output>.json`).

    `metadata` (e.g. class names, preprocessing) goes into the ONNX metadata, the TorchScript extra files or the
    `.pte`'s sidecar; `output_names` name the ONNX outputs (default: one, `logits`). `int8` (onnx: onnxruntime's
    static quantization; executorch: PT2E with XNNPACK's quantizer): calibrated on `calibration` (a folder of
    images; default: the built-in shapes) preprocessed as `preprocess` says (default: ImageNet's at
    `resolution`), compared with fp32 on `report` (default: 64 unlabelled built-in shapes), after `qat_epochs`
    epochs of quantization-aware fine-tuning on `qat_loader`; `keep_float`: layer groups left in float (default:
    none for onnx, for executorch those XNNPACK runs faster in float on this CPU, `choose_float_groups`);
    `reduce_range` (onnx only) as in `quantize`. `task`: the task whose model it is, which decides the formats
    and options it takes (`list_formats`; a zoo network is a classifier).
    """
    row = check_request(format, task, output, int8=int8, dynamic_batch=dynamic_batch,
                        reduce_range=reduce_range, qat_epochs=qat_epochs, calibration=calibration,
                        keep_float=keep_float)
    if qat_epochs and qat_loader is None:
        raise ValueError("--qat-epochs needs --int8 and a trained --checkpoint (qat_loader: its training data)")
    pte = format == "executorch"
    in_float = choose_float_groups(keep_float) if pte else \
        FloatGroups(checked_groups(keep_float or ()), "as asked" if keep_float is not None else "the default")
    writable(output)
    if not int8:
        return Exported(row.write(model, output, resolution=resolution, dynamic_batch=dynamic_batch,
                                  metadata=metadata, output_names=output_names), resolution)
    preprocess = default_preprocess(resolution) if preprocess is None else preprocess.at(resolution)
    calibration_data = calibration_batches(calibration, preprocess)  # the folder checked before the work
    if qat_epochs:  # XNNPACK's int8 weights are on the full 8-bit grid
        model = finetune_for_int8(model, qat_loader, epochs=qat_epochs, reduce_range=False if pte else reduce_range)
    if report is None:
        images = np.concatenate(list(calibration_batches(None, preprocess, images=64, split="val")))
        report = ReportImages(images, None, "64 built-in validation images (no labels)")
    with tempfile.TemporaryDirectory() as work:
        if pte:
            fp32 = export_pte(model, Path(work) / "fp32.pte", resolution=resolution)
            path = export_pte(model, output, resolution=resolution, metadata=metadata,
                              calibration=calibration_data, keep_float=in_float.groups)
        else:
            fp32 = export_graph(model, "onnx", Path(work) / "fp32.onnx", resolution=resolution,
                                dynamic_batch=dynamic_batch, metadata=metadata, output_names=output_names)
            path = quantize(fp32, output, calibration_data, keep_float=in_float.groups,
                            reduce_range=reduce_range)
        compared = compare(load_exported(fp32), load_exported(path), report.images, report.labels)
    weights = WeightRange(False, "XNNPACK's int8 kernels") if pte else choose_weight_range(reduce_range)
    return Exported(path, resolution, Int8Report(weights, in_float, report.description, compared["agreement"],
                                                 compared["fp32_ms"], compared["int8_ms"],
                                                 compared.get("fp32_top1"), compared.get("int8_top1")))
