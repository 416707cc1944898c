"""Detection training options: one dataclass, settable from a YAML recipe and overridden by the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import list_models
from ..recipes import make_options, options_dict, range_problems
from .model import HEAD_CONVS

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")
COCO_FILES = ("train_json", "train_images", "val_json", "val_images")


@dataclass
class DetectConfig:
    """Everything a detection run depends on; the resolved values are written to the run's `config.yaml`."""

    backbone: str = "mobilenet_v2"
    width: float = 0.5
    neck_channels: int = 64
    head_channels: int = 64
    head_conv: str = "separable"  # the heads' 3x3 conv: "separable" (TF2 zoo CenterNet-MobileNetV2) or "full"
    data: str | None = None  # a folder in COCO's or the common export layout; None: built-in synthetic set
    train_json: str | None = None
    train_images: str | None = None
    val_json: str | None = None
    val_images: str | None = None
    synthetic_train_size: int = 4000
    synthetic_val_size: int = 500
    image_size: int = 160
    epochs: int = 3
    batch_size: int = 16
    lr: float = 0.006
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.0001
    schedule: str = "cosine"
    step_epochs: float = 1.0
    gamma: float = 0.1
    warmup_epochs: float = 0.3
    clip_grad: float | None = 10.0
    flip: bool = True  # off for data that is not mirror-symmetric (text, digits, arrows)
    scale: tuple[float, float] = (0.6, 1.3)
    colour: bool = True
    pretrained: str | None = None  # backbone from a classification checkpoint, a torchvision/timm file or a name
    overfit: int = 0  # > 0: train and evaluate on this many training images, no augmentation (a sanity check)
    max_detections: int = 100
    workers: int | None = None  # None: 0 for the built-in set, else up to 4 processes
    seed: int = 0
    output: str = "runs/detect"
    resume: bool = False
    device: str = "auto"
    channels_last: bool = True

    def to_dict(self) -> dict[str, Any]:
        return options_dict(self)


def _problems(config: DetectConfig) -> list[str]:
    problems = []
    if config.backbone not in list_models():
        problems.append(f"backbone: unknown {config.backbone!r}; choose from {', '.join(list_models())}")
    if config.image_size < 32:
        problems.append(f"image_size: must be >= 32, got {config.image_size}")
    problems += range_problems(
        positive={"width": config.width, "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                  "neck_channels": config.neck_channels, "head_channels": config.head_channels,
                  "max_detections": config.max_detections},
        nonnegative={"warmup_epochs": config.warmup_epochs, "weight_decay": config.weight_decay,
                     "workers": config.workers or 0, "overfit": config.overfit},
        choices={"optimizer": (config.optimizer, OPTIMIZERS), "schedule": (config.schedule, SCHEDULES),
                 "head_conv": (config.head_conv, HEAD_CONVS)})
    if not 0 < config.scale[0] <= config.scale[1]:
        problems.append(f"scale: need 0 < low <= high, got {list(config.scale)}")
    given = [k for k in COCO_FILES if getattr(config, k) is not None]
    if given and len(given) < len(COCO_FILES):
        missing = next(k for k in COCO_FILES if k not in given)
        problems.append(f"{missing.replace('_', '-')}: needed with --{given[0].replace('_', '-')} (COCO files "
                        f"come as --train-json, --train-images, --val-json, --val-images)")
    if given and config.data is not None:
        problems.append("data: give either --data DIR or the four COCO file options, not both")
    for key in ("data", "train_images", "val_images"):
        if (folder := getattr(config, key)) is not None and not Path(folder).is_dir():
            problems.append(f"{key}: {folder}: no such folder")
    for key in ("train_json", "val_json"):
        if (file := getattr(config, key)) is not None and not Path(file).is_file():
            problems.append(f"{key}: {file}: no such file")
    return problems


def make_detect_config(recipe: str | Path | None = None, **overrides: Any) -> DetectConfig:
    """Defaults, then the recipe's values, then `overrides` (None values are ignored); checked."""
    return make_options(DetectConfig, _problems, recipe, **overrides)
