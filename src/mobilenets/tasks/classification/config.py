"""Classification training options: the engine's, plus the model, the data and the augmentation; settable from a
YAML recipe and overridden by the command line (each field is a flag of `mobilenets train`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...engine.config import TrainingOptions, network_problems, synthetic_size_problems
from ...models import list_models
from ...recipes import (
    ConfigError,
    key_values,
    make_options,
    option,
    path_problems,
    positive_float,
    positive_int,
    range_problems,
)

__all__ = ["AUTO_AUGMENT", "ConfigError", "TrainConfig", "make_config"]

AUTO_AUGMENT = ("autoaugment", "randaugment")


@dataclass
class TrainConfig(TrainingOptions):
    """Everything a classification run depends on; the resolved values are written to the run's `config.yaml`."""

    model: str = option("mobilenet_v2", "the zoo network", choices=list_models())
    width: float = option(0.5, "width multiplier α", type=positive_float, metavar="W")
    model_options: dict[str, Any] | None = option(None, "the network's own options, e.g. shortcut=none,"
                                                        "linear_bottleneck=false (the model options of "
                                                        "`mobilenets profile --help`)", type=key_values,
                                                  metavar="K=V,...")
    dropout: float | None = option(None, "dropout before the classifier (default: the model's)", metavar="P")
    data: str | None = option(None, "ImageFolder root: train/ and val/, or one folder with --val-split "
                                    "(default: the built-in synthetic shapes)", metavar="DIR")
    val_split: float | None = option(None, "fraction of DIR held out for validation", metavar="F")
    synthetic_train_size: int = option(10000, "built-in shapes: training images", type=positive_int)
    synthetic_val_size: int = option(2000, "built-in shapes: validation images", type=positive_int)
    image_size: int = option(64, "input size in pixels", type=positive_int)
    label_smoothing: float = option(0.0, "label smoothing")
    pretrained: str | None = option(None, "initial weights: our checkpoint, a torchvision/timm file, or a "
                                          "published-weights name", metavar="SOURCE")
    freeze_backbone: bool = option(False, "train only the classifier")
    crop_scale: tuple[float, float] = option((0.8, 1.0), "random-resized-crop area range (mild: ImageNet's 0.08-1 "
                                                         "destroys small data)")
    hflip: bool = option(False, "random horizontal flips")
    color_jitter: float = option(0.0, "brightness/contrast/saturation jitter")
    auto_augment: str | None = option(None, "an automatic augmentation policy", choices=AUTO_AUGMENT)
    random_erasing: float = option(0.0, "probability of erasing a random rectangle", metavar="P")

    def problems(self) -> list[str]:
        problems = super().problems()
        problems += network_problems("model", self.model, self.width, self.image_size, self.model_options)
        problems += synthetic_size_problems(self.synthetic_train_size, self.synthetic_val_size)
        problems += range_problems(
            positive={},
            nonnegative={"label_smoothing": self.label_smoothing, "color_jitter": self.color_jitter,
                         "random_erasing": self.random_erasing},
            choices={"auto_augment": (self.auto_augment, AUTO_AUGMENT)},
            fractions={"dropout": self.dropout, "label_smoothing": self.label_smoothing,
                       "random_erasing": self.random_erasing})
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            problems.append(f"crop_scale: need 0 < low <= high <= 1, got {list(self.crop_scale)}")
        if self.val_split is not None and not 0 < self.val_split < 1:
            problems.append(f"val_split: must be between 0 and 1, got {self.val_split}")
        return problems + path_problems(folders={"data": self.data})


def make_config(recipe: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the recipe's values, then `overrides` (None values are ignored); checked."""
    return make_options(TrainConfig, recipe, **overrides)
