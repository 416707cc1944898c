"""What a task tells the engine: how to build its data, model and loss, how to evaluate, which score picks the
best checkpoint. Classification and detection are such definitions (see docs/adding-a-task.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.wrappers import EpochSeeded
from .config import TrainingOptions


@dataclass(kw_only=True)
class TaskData:
    """A run's training and validation sets, and what the engine reports and keeps about them."""

    train: EpochSeeded
    val: Dataset
    classes: list[str]
    description: str  # one line for the log: what the data is and how much of it
    meta: dict[str, Any]  # what a checkpoint needs to be used: class names, preprocessing, ...
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # unreadable files and why
    built_in: bool = False  # generated in this process: loading it in worker processes only costs start-up time
    collate: Callable[[list], Any] | None = None


class Task:
    """A training task: subclasses set the class attributes and implement the methods without a default."""

    name: str  # recorded in checkpoints, so that one task's last.pt is never resumed by another
    scores: tuple[str, ...]  # the validation scores evaluate() returns, as metrics.csv columns after val_loss
    best: str  # the score (higher is better) that picks best.safetensors
    score_label: str  # the y-axis of the scores in curves.png
    eval_batch_size: int = 64  # the smallest validation batch

    def build_data(self, config: TrainingOptions, progress: bool) -> TaskData:
        raise NotImplementedError

    def build_model(self, config: TrainingOptions, data: TaskData) -> nn.Module:
        """The network to train; it must have a `config` dict that rebuilds it (see weights.io.save)."""
        raise NotImplementedError

    def build_loss(self, config: TrainingOptions, data: TaskData, model: nn.Module
                   ) -> Callable[[Any, Any], torch.Tensor]:
        """loss(model outputs, batch targets) -> a scalar tensor."""
        raise NotImplementedError

    def evaluate(self, config: TrainingOptions, model: nn.Module, loader: Iterable, device: torch.device,
                 data: TaskData, *, amp: bool, progress: bool) -> dict[str, float]:
        """`val_loss` and every score in `scores`, over the validation loader, the model in eval mode."""
        raise NotImplementedError

    def describe_model(self, config: TrainingOptions, data: TaskData) -> str:
        """What is trained, for the log: e.g. 'mobilenet_v2 α=0.5, 10 classes'."""
        raise NotImplementedError

    def describe_scores(self, row: dict[str, float]) -> str:
        """An epoch's scores for the log, e.g. 'top-1 0.9170  top-5 0.9985'."""
        raise NotImplementedError

    def summary(self, config: TrainingOptions, history: list[dict[str, float]], best: dict[str, float]
                ) -> dict[str, Any]:
        """The task's own entries of summary.json (the engine adds epochs, data sizes, time, CPU)."""
        raise NotImplementedError

    def frozen_part(self, config: TrainingOptions, model: nn.Module) -> nn.Module | None:
        """A part of the model that is not trained: its batch norms keep their running statistics."""
        return None

    def stop_early(self, config: TrainingOptions, history: list[dict[str, float]]) -> bool:
        """Whether the run reached its goal before its last epoch."""
        return False

    def check_result(self, config: TrainingOptions, history: list[dict[str, float]]) -> None:
        """Raise TrainingError if the finished run failed a goal it was set (e.g. an overfit check)."""
