"""Classification as a task of the engine: cross-entropy on a zoo network, scored by validation top-1/top-5;
and `mobilenets.train`, which runs it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from ...engine import Task, TaskData, TrainResult, fit
from ...factory import pretrained_model
from ...models import MobileNet, build_model
from ...recipes import ConfigError
from ...weights.convert import Checkpoint
from ...weights.io import require_architecture
from ...weights.registry import open_weights
from .checkpoint import TASK
from .config import TrainConfig, make_config
from .data import build_data
from .evaluate import evaluate_loader

log = logging.getLogger(__name__)

_ARGUMENT_NAMES = {"name": "--model", "width_mult": "--width"}


def _pretrained_weights(config: TrainConfig) -> Checkpoint:
    """`config.pretrained` (our checkpoint, a torchvision/timm file, a published name), refused if it contradicts
    the architecture asked for."""
    checkpoint = open_weights(config.pretrained, config.model)
    require_architecture(checkpoint, {"name": (config.model, _ARGUMENT_NAMES["name"]),
                                      "width_mult": (config.width, _ARGUMENT_NAMES["width_mult"])})
    return checkpoint


def _pretrained(config: TrainConfig, num_classes: int) -> MobileNet:
    """`config.model` initialised from `config.pretrained`; the classifier re-initialised if the class counts
    differ."""
    checkpoint = _pretrained_weights(config)
    model, dropped = pretrained_model(config.model, checkpoint, width_mult=config.width, num_classes=num_classes,
                                      dropout=config.dropout, new_classifier=True, argument_names=_ARGUMENT_NAMES,
                                      **(config.model_options or {}))
    note = (f"; its classifier has {dropped} classes and this data {num_classes}: the classifier is "
            f"re-initialised" if dropped is not None else "")
    log.info("initialised from %s (%s layout)%s", config.pretrained, checkpoint.layout, note)
    return model


class ClassificationTask(Task):
    """A zoo network trained with cross-entropy; the best checkpoint has the highest validation top-1."""

    name = TASK
    scores = ("top1", "top5")
    best = "top1"
    score_label = "validation accuracy"

    def check_inputs(self, config: TrainConfig) -> None:
        # a new run's check only: files trained before it was made record a val_split with the built-in data
        if config.val_split is not None and config.data is None:
            raise ConfigError("val_split: splits a --data folder; the built-in data has its own validation set "
                              "(give --data DIR, or leave --val-split out)")
        if config.pretrained is not None:
            _pretrained_weights(config)

    def build_data(self, config: TrainConfig, progress: bool) -> TaskData:
        data = build_data(config, progress)
        if len(data.classes) < 2:
            log.warning("%s has one class (%s): every prediction is right and the accuracy means nothing",
                        config.data, data.classes[0])
        return data

    def build_model(self, config: TrainConfig, data: TaskData) -> MobileNet:
        if config.pretrained is None:
            model = build_model(config.model, width_mult=config.width, num_classes=len(data.classes),
                                dropout=config.dropout, **(config.model_options or {}))
        else:
            model = _pretrained(config, len(data.classes))
        if config.freeze_backbone:
            model.features.requires_grad_(False)
        return model

    def build_loss(self, config: TrainConfig, data: TaskData, model: nn.Module) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def evaluate(self, config: TrainConfig, model: nn.Module, loader, device, data: TaskData, *, amp: bool,
                 progress: bool) -> dict[str, float]:
        result = evaluate_loader(model, loader, device, len(data.classes), channels_last=config.channels_last,
                                 amp=amp, progress=progress)
        return {"val_loss": result.loss, "top1": result.top1, "top5": result.top5}

    def describe_model(self, config: TrainConfig, data: TaskData) -> str:
        return f"{config.model} α={config.width:g}, {len(data.classes)} classes"

    def describe_scores(self, row: dict[str, float]) -> str:
        return f"top-1 {row['top1']:.4f}  top-5 {row['top5']:.4f}"

    def summary(self, config: TrainConfig, history: list[dict[str, float]], best: dict[str, float]
                ) -> dict[str, Any]:
        return {"model": config.model, "width": config.width, "best_top1": best.get("top1"),
                "final_top1": history[-1]["top1"] if history else None}

    def frozen_part(self, config: TrainConfig, model: nn.Module) -> nn.Module | None:
        return model.features if config.freeze_backbone else None


CLASSIFICATION = ClassificationTask()


def train(config: TrainConfig | None = None, *, recipe: str | Path | None = None, progress: bool = True,
          **options: Any) -> TrainResult:
    """Train a classifier; return its summary (also written to `<output>/summary.json`) and the model.

    Give a TrainConfig, or a YAML `recipe` and/or options by name (`model=`, `epochs=`, `data=`, ...).
    Under `torchrun`, each process trains its share of every batch; only rank 0 writes files.
    """
    return fit(CLASSIFICATION, config or make_config(recipe, **options), progress=progress)
