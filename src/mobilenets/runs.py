"""What every training run shares: logging into its output folder, optimizer and learning-rate schedule,
and the metrics files (metrics.csv rewritten after each epoch, curves.png redrawn every half minute)."""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._atomic import atomic_path, write_text
from .plots import plot_curves

STATE_FORMAT = "mobilenets.train-state"


class ResumeError(RuntimeError):
    """A run cannot be resumed as asked (another task's checkpoint, or options that change the result)."""


def save_training_state(path: Path, task: str, state: dict[str, Any]) -> None:
    """Write a run's `last.pt` atomically: a kill at any moment leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": STATE_FORMAT, "task": task, **state}, tmp)


def load_training_state(path: Path, task: str) -> dict[str, Any]:
    """Read a `last.pt` safely (weights_only: tensors and plain containers only) and check it is a `task` run's."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable training checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a mobilenets training checkpoint")
    if state.get("task") != task:
        raise ValueError(f"{path}: a {state.get('task')} run's checkpoint, not a {task} one")
    return state


def restore_run(path: Path, task: str, config: Any, resumable: set[str], model: nn.Module,
                optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """Load a run's `last.pt` into model, optimizer and scheduler and return the state; refuses when an option
    outside `resumable` (those that do not change the result) differs from the run's."""
    state = load_training_state(path, task)
    before = {k: v for k, v in state["train_config"].items() if k not in resumable}
    now = {k: v for k, v in config.to_dict().items() if k not in resumable}
    if changed := sorted(k for k in now if before.get(k) != now[k]):
        raise ResumeError(f"{path}: cannot resume with a different {changed[0]} "
                          f"({before.get(changed[0])!r} in the run, {now[changed[0]]!r} now)")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


def start_logging(log: logging.Logger, out: Path, is_main: bool) -> logging.Handler | None:
    """Log to stderr, and on the main process also to `out/train.log`; returns the file handler to close."""
    log.setLevel(logging.INFO)
    if not log.handlers or all(isinstance(h, logging.FileHandler) for h in log.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(console)
    if not is_main:
        log.setLevel(logging.WARNING)
        return None
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


def make_optimizer(model: nn.Module, config: Any) -> torch.optim.Optimizer:
    """`config.optimizer` (sgd, rmsprop, adamw) over the trainable parameters, with no weight decay on batch-norm
    parameters and biases (every parameter with fewer than 2 dimensions)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=config.lr, alpha=config.rmsprop_alpha, eps=config.rmsprop_eps,
                                   momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, config: Any, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate factor: linear warm-up, then cosine to zero or a step decay (`gamma` every
    `step_epochs` epochs; with step_epochs=1 and gamma=0.98, the V2 paper's exponential decay)."""
    warmup = round(config.warmup_epochs * steps_per_epoch)
    total = config.epochs * steps_per_epoch
    step_size = max(1, round(config.step_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
        return config.gamma ** ((step - warmup) // step_size)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class MetricsFiles:
    """A run's metrics.csv, rewritten after every epoch, and curves.png (losses, and the validation `scores`
    against epoch), redrawn at most every `plot_every_s` seconds and at the end: a redraw takes about half a
    second, which dominated runs of many short epochs."""

    def __init__(self, out: Path, columns: Sequence[str], scores: Sequence[str], score_label: str, *,
                 plot_every_s: float = 30.0) -> None:
        self.out, self.columns, self.scores, self.score_label = out, list(columns), scores, score_label
        self.plot_every_s = plot_every_s
        self._plotted_at: float | None = None
        self._plotted_rows = 0

    def update(self, history: list[dict[str, float]]) -> None:
        """Rewrite metrics.csv; redraw curves.png if the last drawing is older than `plot_every_s`."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text(self.out / "metrics.csv", buffer.getvalue())
        if self._plotted_at is None or time.monotonic() - self._plotted_at >= self.plot_every_s:
            self._plot(history)

    def finish(self, history: list[dict[str, float]]) -> None:
        """Redraw curves.png if the last drawing misses epochs."""
        if history and self._plotted_rows != len(history):
            self._plot(history)

    def _plot(self, history: list[dict[str, float]]) -> None:
        plot_curves(history, self.out / "curves.png", scores=self.scores, score_label=self.score_label)
        self._plotted_at, self._plotted_rows = time.monotonic(), len(history)
