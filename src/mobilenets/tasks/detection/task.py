"""Detection as a task of the engine: CenterNet on a zoo backbone, scored by COCO box AP on the validation set,
with an optional overfit check; and `train_detector`, which runs it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from ...engine import Task, TrainingError, TrainResult, fit
from .checkpoint import TASK, pretrained_checkpoint, pretrained_detector
from .config import DetectConfig, make_detect_config
from .data import DetectionData, build_detection_data
from .evaluate import evaluate_detector
from .loss import CenterNetCriterion
from .model import CenterNet, create_detector

log = logging.getLogger(__name__)


def _overfitted(history: list[dict[str, float]]) -> bool:
    """The overfit check's goal: the training loss fell tenfold and AP50 on the same images reached 1.0."""
    return history[-1]["train_loss"] <= history[0]["train_loss"] / 10 and history[-1]["map50"] >= 1.0


class DetectionTask(Task):
    """CenterNet trained with its focal and L1 losses; the best checkpoint has the highest validation AP."""

    name = TASK
    scores = ("map", "map50", "map75", "map_small", "map_medium", "map_large")
    best = "map"
    score_label = "validation AP"
    eval_batch_size = 32

    def check_inputs(self, config: DetectConfig) -> None:
        if config.pretrained is not None:
            pretrained_checkpoint(config.pretrained, **self._architecture(config))

    def build_data(self, config: DetectConfig, progress: bool) -> DetectionData:
        return build_detection_data(config)

    def build_model(self, config: DetectConfig, data: DetectionData) -> CenterNet:
        options = {**self._architecture(config), "num_classes": len(data.classes)}
        if config.pretrained is None:
            return create_detector("centernet", **options)
        model, description = pretrained_detector(config.pretrained, **options)
        log.info("%s", description)
        return model

    @staticmethod
    def _architecture(config: DetectConfig) -> dict[str, Any]:
        return {"backbone": config.backbone, "width_mult": config.width, "neck_channels": config.neck_channels,
                "head_channels": config.head_channels, "head_conv": config.head_conv}

    def build_loss(self, config: DetectConfig, data: DetectionData, model: CenterNet) -> nn.Module:
        return CenterNetCriterion(len(data.classes), model.stride)

    def evaluate(self, config: DetectConfig, model: nn.Module, loader, device, data: DetectionData, *, amp: bool,
                 progress: bool) -> dict[str, float]:
        result = evaluate_detector(model, loader, device, data.val_coco, data.category_ids,
                                   max_detections=config.max_detections, channels_last=config.channels_last,
                                   amp=amp, progress=progress)
        return {"val_loss": result.loss, **{k: result.metrics[k] for k in self.scores}}

    def describe_model(self, config: DetectConfig, data: DetectionData) -> str:
        return (f"CenterNet on {config.backbone} α={config.width:g}, {len(data.classes)} classes, "
                f"{config.image_size}x{config.image_size} input")

    def describe_scores(self, row: dict[str, float]) -> str:
        return f"AP {row['map']:.4f}  AP50 {row['map50']:.4f}"

    def summary(self, config: DetectConfig, history: list[dict[str, float]], best: dict[str, float]
                ) -> dict[str, Any]:
        return {"backbone": config.backbone, "width": config.width, "image_size": config.image_size,
                "map": best.get("map"), "map50": best.get("map50"),
                "final": {k: history[-1][k] for k in ("map", "map50", "map75")} if history else None}

    def stop_early(self, config: DetectConfig, history: list[dict[str, float]]) -> bool:
        return bool(config.overfit) and bool(history) and _overfitted(history)

    def check_result(self, config: DetectConfig, history: list[dict[str, float]]) -> None:
        """Fail an overfit check that missed its goal, naming what was missed."""
        if not config.overfit:
            return
        first, last, final50 = history[0]["train_loss"], history[-1]["train_loss"], history[-1]["map50"]
        if not _overfitted(history):
            raise TrainingError(f"overfit check failed: loss {first:.4f} -> {last:.4f} (needs a tenfold fall), "
                                f"AP50 {final50:.4f} (needs 1.0); the targets, loss or decoding may be broken")
        log.info("overfit check passed: loss %.4f -> %.4f, AP50 %.4f", first, last, final50)


DETECTION = DetectionTask()


def train_detector(config: DetectConfig | None = None, *, recipe: str | Path | None = None, progress: bool = True,
                   **options: Any) -> TrainResult:
    """Train a CenterNet; return its summary (also `<output>/summary.json`) and the model.

    Give a DetectConfig, or a YAML `recipe` and/or options by name (`backbone=`, `epochs=`, `data=`, ...).
    Under `torchrun`, each process trains its share of every batch; only rank 0 writes files.
    """
    return fit(DETECTION, config or make_detect_config(recipe, **options), progress=progress)
