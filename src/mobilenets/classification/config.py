"""Training options: one dataclass, settable from a YAML recipe and overridden by the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import list_models
from ..recipes import ConfigError, make_options, options_dict, range_problems

__all__ = ["AUTO_AUGMENT", "OPTIMIZERS", "SCHEDULES", "ConfigError", "TrainConfig", "make_config"]

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = ("cosine", "step")
AUTO_AUGMENT = ("autoaugment", "randaugment")


@dataclass
class TrainConfig:
    """Everything a training run depends on; the resolved values are written to the run's `config.yaml`."""

    model: str = "mobilenet_v2"
    width: float = 0.5
    dropout: float | None = None
    data: str | None = None  # None: the built-in synthetic shapes
    val_split: float | None = None
    synthetic_train_size: int = 10000
    synthetic_val_size: int = 2000
    image_size: int = 64
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.01
    optimizer: str = "adamw"
    momentum: float = 0.9
    rmsprop_alpha: float = 0.9
    rmsprop_eps: float = 0.0316  # sqrt of TensorFlow's 1e-3: TF adds eps inside the square root
    schedule: str = "cosine"
    step_epochs: float = 1.0  # step schedule: multiply the lr by `gamma` every `step_epochs` epochs
    gamma: float = 0.98
    warmup_epochs: float = 0.3
    label_smoothing: float = 0.0
    weight_decay: float = 0.05
    clip_grad: float | None = None
    ema: bool = False
    ema_decay: float = 0.9998
    pretrained: str | None = None
    freeze_backbone: bool = False
    crop_scale: tuple[float, float] = (0.8, 1.0)  # mild: see TRAINING.md on small data
    hflip: bool = False
    color_jitter: float = 0.0
    auto_augment: str | None = None
    random_erasing: float = 0.0
    workers: int | None = None  # None: 0 for the in-memory built-in set, else up to 4 processes
    seed: int = 0
    output: str = "runs/train"
    resume: bool = False
    device: str = "auto"
    amp: bool = True  # CUDA only
    channels_last: bool = True

    def to_dict(self) -> dict[str, Any]:
        return options_dict(self)


def _problems(config: TrainConfig) -> list[str]:
    problems = []
    if config.model not in list_models():
        problems.append(f"model: unknown {config.model!r}; choose from {', '.join(list_models())}")
    if config.image_size < 32:
        problems.append(f"image_size: must be >= 32, got {config.image_size}")
    problems += range_problems(
        positive={"width": config.width, "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr},
        nonnegative={"warmup_epochs": config.warmup_epochs, "weight_decay": config.weight_decay,
                     "label_smoothing": config.label_smoothing, "workers": config.workers or 0,
                     "color_jitter": config.color_jitter, "random_erasing": config.random_erasing},
        choices={"optimizer": (config.optimizer, OPTIMIZERS), "schedule": (config.schedule, SCHEDULES),
                 "auto_augment": (config.auto_augment, AUTO_AUGMENT)})
    if config.val_split is not None and not 0 < config.val_split < 1:
        problems.append(f"val_split: must be between 0 and 1, got {config.val_split}")
    if config.data is not None and not Path(config.data).is_dir():
        problems.append(f"data: {config.data}: no such folder")
    return problems


def make_config(recipe: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the recipe's values, then `overrides` (None values are ignored); checked."""
    return make_options(TrainConfig, _problems, recipe, **overrides)
