"""Training options: one dataclass, settable from a YAML recipe and overridden by the command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..models import list_models

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
        out = dataclasses.asdict(self)
        out["crop_scale"] = list(self.crop_scale)
        return out


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_OPTIONAL_FLOATS = {"dropout", "val_split", "clip_grad"}
_OPTIONAL_INTS = {"workers"}


def _coerce(name: str, value: Any) -> Any:
    """Give a recipe or command-line value the field's type, or fail naming the option."""
    if value is None:
        return None
    default = TrainConfig.__dataclass_fields__[name].default
    try:
        if name in _OPTIONAL_FLOATS or isinstance(default, float):
            return float(value)
        if name in _OPTIONAL_INTS:
            return int(value)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if name == "crop_scale":
            low, high = (float(v) for v in value)
            return low, high
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: invalid value {value!r}") from None
    return str(value)


class ConfigError(ValueError):
    """An invalid option or recipe; the message is one line and names the option or file."""


def _check(config: TrainConfig) -> TrainConfig:
    problems = []
    if config.model not in list_models():
        problems.append(f"model: unknown {config.model!r}; choose from {', '.join(list_models())}")
    positive = {"width": config.width, "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                "image_size": config.image_size}
    problems += [f"{k}: must be > 0, got {v}" for k, v in positive.items() if not v > 0]
    if config.image_size < 32:
        problems.append(f"image_size: must be >= 32, got {config.image_size}")
    if config.optimizer not in OPTIMIZERS:
        problems.append(f"optimizer: {config.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if config.schedule not in SCHEDULES:
        problems.append(f"schedule: {config.schedule!r} is not one of {', '.join(SCHEDULES)}")
    if config.auto_augment is not None and config.auto_augment not in AUTO_AUGMENT:
        problems.append(f"auto_augment: {config.auto_augment!r} is not one of {', '.join(AUTO_AUGMENT)}")
    if config.val_split is not None and not 0 < config.val_split < 1:
        problems.append(f"val_split: must be between 0 and 1, got {config.val_split}")
    nonnegative = {"warmup_epochs": config.warmup_epochs, "weight_decay": config.weight_decay,
                   "label_smoothing": config.label_smoothing, "workers": config.workers or 0,
                   "color_jitter": config.color_jitter, "random_erasing": config.random_erasing}
    problems += [f"{k}: must be >= 0, got {v}" for k, v in nonnegative.items() if v < 0]
    if config.data is not None and not Path(config.data).is_dir():
        problems.append(f"data: {config.data}: no such folder")
    if problems:
        raise ConfigError(problems[0])
    return config


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe: a mapping of TrainConfig fields (dashes or underscores)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of options, got {type(raw).__name__}")
    values = {str(k).replace("-", "_"): v for k, v in raw.items()}
    if unknown := sorted(set(values) - set(FIELDS)):
        raise ConfigError(f"{path}: unknown option {unknown[0]!r}")
    return values


def make_config(recipe: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the recipe's values, then `overrides` (None values are ignored); checked."""
    values = load_recipe(recipe) if recipe else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if unknown := sorted(set(values) - set(FIELDS)):
        raise ConfigError(f"unknown option {unknown[0]!r}")
    return _check(TrainConfig(**{k: _coerce(k, v) for k, v in values.items()}))
