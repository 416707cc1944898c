"""A trained classifier exported for inference, its class names and preprocessing in the metadata; as int8, with
the report on its own validation split and, if asked, quantization-aware fine-tuning on its run's training data."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..._atomic import writable
from ...data.folder import DataError
from ...data.transforms import Preprocess, eval_transform
from ...deploy import Exported, ReportImages, export
from ...deploy.formats import check_request
from .checkpoint import TASK, Classifier, load_classifier, recorded_training
from .data import build_data
from .evaluate import evaluation_set


def report_images(classifier: Classifier, val: str | Path | None, preprocess: Preprocess, limit: int = 2000
                  ) -> ReportImages:
    """Up to `limit` labelled images to compare int8 with fp32 on: the checkpoint's validation split, or `val`."""
    dataset, where = evaluation_set(classifier, val)
    transform = eval_transform(preprocess)
    items = [dataset[i] for i in range(min(limit, len(dataset)))]
    images = np.stack([transform(image).numpy() for image, _ in items])
    return ReportImages(images, np.array([label for _, label in items]), f"{len(items)} images of {where}")


def training_loader(classifier: Classifier) -> DataLoader:
    """The checkpoint's run's training data, shuffled as its seed says: for quantization-aware fine-tuning."""
    config = recorded_training(classifier)
    try:
        data = build_data(config)
    except (DataError, ValueError) as e:
        raise DataError(f"cannot read the run's training data: {e}") from None
    return DataLoader(data.train, batch_size=config.batch_size, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(config.seed))


def export_classifier(checkpoint: str | Path, format: str, output: str | Path, *, resolution: int | None = None,
                      dynamic_batch: bool = False, int8: bool = False, calibration: str | Path | None = None,
                      val: str | Path | None = None, keep_float: Iterable[str] | None = None,
                      reduce_range: bool | None = None, qat_epochs: int = 0) -> Exported:
    """`deploy.export` of a trained classifier (`best.safetensors` or `last.pt`) with its class names and
    preprocessing in the metadata, at its training resolution unless `resolution` is given. With `int8`, the
    report compares int8 with fp32 on `val` (default: the run's validation split), and `qat_epochs` fine-tune on
    the run's training data first."""
    check_request(format, TASK, int8=int8, dynamic_batch=dynamic_batch, reduce_range=reduce_range,
                  qat_epochs=qat_epochs, calibration=calibration, keep_float=keep_float, val=val)
    writable(output, keeping=[checkpoint])
    classifier = load_classifier(checkpoint)
    size = resolution or classifier.preprocess.image_size
    preprocess = classifier.preprocess.at(size)
    metadata = {"task": TASK, "classes": classifier.classes, "preprocess": preprocess.to_dict(),
                "model": classifier.model.config, "train_config": classifier.meta.get("train_config", {})}
    int8_options = {"preprocess": preprocess, "calibration": calibration, "keep_float": keep_float,
                    "reduce_range": reduce_range, "report": report_images(classifier, val, preprocess),
                    "qat_loader": training_loader(classifier) if qat_epochs else None, "qat_epochs": qat_epochs
                    } if int8 else {}
    return export(classifier.model, format, output, resolution=size, dynamic_batch=dynamic_batch,
                  metadata=metadata, int8=int8, **int8_options)
