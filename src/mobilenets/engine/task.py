"""What a task tells the engine: how to build its data, model and loss, how to evaluate, which score picks the
best checkpoint. Classification and detection are such definitions (see docs/adding-a-task.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod
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
    built_in: bool = False  # generated in this process: worker processes would only add start-up time
    collate: Callable[[list], Any] | None = None


class Task(ABC):
    """A training task. Subclasses set the attributes and implement the abstract methods:

    build_data -> TaskData; build_model -> the network (with a `config` dict that rebuilds it); build_loss ->
    loss(outputs, targets), a scalar tensor; evaluate -> {"val_loss": ..., each of `scores`: ...} over the
    validation loader; describe_model and describe_scores -> log lines; summary -> the task's entries of
    summary.json (the engine adds epochs, data sizes, time and the CPU).
    """

    name: str  # recorded in checkpoints, so that one task's last.pt is never resumed by another
    scores: tuple[str, ...]  # the validation scores, as metrics.csv columns after val_loss
    best: str  # the score (higher is better) that picks best.safetensors
    score_label: str  # the y-axis of the scores in curves.png
    eval_batch_size: int = 64  # the smallest validation batch

    @abstractmethod
    def build_data(self, config: TrainingOptions, progress: bool) -> TaskData: ...
    @abstractmethod
    def build_model(self, config: TrainingOptions, data: TaskData) -> nn.Module: ...
    @abstractmethod
    def build_loss(self, config: TrainingOptions, data: TaskData, model: nn.Module) -> Callable: ...
    @abstractmethod
    def evaluate(self, config: TrainingOptions, model: nn.Module, loader: Iterable, device: torch.device,
                 data: TaskData, *, amp: bool, progress: bool) -> dict[str, float]: ...
    @abstractmethod
    def describe_model(self, config: TrainingOptions, data: TaskData) -> str: ...
    @abstractmethod
    def describe_scores(self, row: dict[str, float]) -> str: ...
    @abstractmethod
    def summary(self, config: TrainingOptions, history: list[dict], best: dict) -> dict[str, Any]: ...

    def check_inputs(self, config: TrainingOptions) -> None:
        """Refuse, before the data is built, inputs that can be checked on their own (e.g. initial weights of
        another architecture)."""
        return None

    def frozen_part(self, config: TrainingOptions, model: nn.Module) -> nn.Module | None:
        """A part of the model that is not trained: its batch norms keep their running statistics."""
        return None

    def stop_early(self, config: TrainingOptions, history: list[dict[str, float]]) -> bool:
        """Whether the run reached its goal before its last epoch."""
        return False

    def check_result(self, config: TrainingOptions, history: list[dict[str, float]]) -> None:
        """Raise TrainingError if the finished run failed a goal it was set (e.g. an overfit check)."""
        return None
