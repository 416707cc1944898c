"""Detection training options: the engine's (with detection's defaults), plus the detector, the data and the
augmentation; settable from a YAML recipe and overridden by the command line (each field is a flag)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...engine.config import TrainingOptions, network_problems, synthetic_size_problems
from ...models import list_models
from ...recipes import (
    count,
    load_recipe,
    make_options,
    option,
    path_problems,
    positive_float,
    positive_int,
    range_problems,
)
from .model import HEAD_CONVS

COCO_FILES = ("train_json", "train_images", "val_json", "val_images")
MAX_CHANNELS = 4096  # neck and head widths: CenterNet's heads use 64-256; beyond this a run only exhausts memory
OVERFIT_EPOCHS = 300  # an overfit check without epochs: a cap; the run stops as soon as the check passes


@dataclass
class DetectConfig(TrainingOptions):
    """Everything a detection run depends on; the resolved values are written to the run's `config.yaml`."""

    epochs: int = option(3, "training epochs", type=positive_int)
    batch_size: int = option(16, "images per step, over all processes", type=positive_int)
    lr: float = option(0.006, "peak learning rate", type=positive_float)
    weight_decay: float = option(0.0001, "decoupled (adamw) or L2 weight decay; none on batch norm and biases")
    gamma: float = option(0.1, "step schedule: the decay factor")
    clip_grad: float | None = option(10.0, "clip the gradient norm to this", type=positive_float, metavar="NORM")
    output: str = option("runs/detect", "where checkpoints, metrics and plots go; if it holds another run, the "
                                        "first free OUTPUT2, OUTPUT3, ...", metavar="DIR")
    backbone: str = option("mobilenet_v2", "the zoo network under the detector", choices=list_models())
    width: float = option(0.5, "backbone width multiplier α", type=positive_float, metavar="W")
    neck_channels: int = option(64, "feature-pyramid channels", type=positive_int)
    head_channels: int = option(64, "channels of the heads' 3x3 conv", type=positive_int)
    head_conv: str = option("separable", "the heads' 3x3 conv: depthwise-separable (TF2 zoo CenterNet-MobileNetV2, "
                                         "8x cheaper at stride 4) or full", choices=HEAD_CONVS)
    data: str | None = option(None, "COCO layout (annotations/instances_{train,val}*.json beside {train,val}*/) or "
                                    "export layout ({train,valid}/_annotations.coco.json); default: the built-in "
                                    "synthetic set", metavar="DIR")
    train_json: str | None = option(None, "COCO annotations of the training images", metavar="FILE")
    train_images: str | None = option(None, "the training images' folder", metavar="DIR")
    val_json: str | None = option(None, "COCO annotations of the validation images", metavar="FILE")
    val_images: str | None = option(None, "the validation images' folder", metavar="DIR")
    synthetic_train_size: int = option(4000, "built-in set: training images", type=positive_int)
    synthetic_val_size: int = option(500, "built-in set: validation images", type=positive_int)
    image_size: int = option(160, "square network input (letterboxed)", type=positive_int)
    flip: bool = option(True, "random horizontal flips (turn off for text, digits, arrows)")
    scale: tuple[float, float] = option((0.6, 1.3), "random rescaling range")
    colour: bool = option(True, "random colour jitter")
    pretrained: str | None = option(None, "initial weights: a detector of ours, or a backbone from our "
                                          "classifier, a torchvision/timm file or a published-weights name",
                                    metavar="SOURCE")
    overfit: int = option(0, "sanity check: train on N training images until the loss falls tenfold and AP50 is "
                             "1.0 (at most 300 epochs unless --epochs)", type=count)
    max_detections: int = option(100, "detections kept per image for evaluation", type=positive_int)

    def problems(self) -> list[str]:
        problems = super().problems()
        problems += network_problems("backbone", self.backbone, self.width, self.image_size)
        problems += range_problems(
            positive={"neck_channels": self.neck_channels, "head_channels": self.head_channels,
                      "max_detections": self.max_detections},
            nonnegative={"overfit": self.overfit}, choices={"head_conv": (self.head_conv, HEAD_CONVS)},
            at_most={"neck_channels": (self.neck_channels, MAX_CHANNELS),
                     "head_channels": (self.head_channels, MAX_CHANNELS)})
        problems += synthetic_size_problems(self.synthetic_train_size, self.synthetic_val_size)
        if not 0 < self.scale[0] <= self.scale[1]:
            problems.append(f"scale: need 0 < low <= high, got {list(self.scale)}")
        given = [k for k in COCO_FILES if getattr(self, k) is not None]
        if given and len(given) < len(COCO_FILES):
            missing = next(k for k in COCO_FILES if k not in given)
            problems.append(f"{missing.replace('_', '-')}: needed with --{given[0].replace('_', '-')} (COCO files "
                            f"come as --train-json, --train-images, --val-json, --val-images)")
        if given and self.data is not None:
            problems.append("data: give either --data DIR or the four COCO file options, not both")
        return problems + path_problems(folders={k: getattr(self, k) for k in ("data", "train_images", "val_images")},
                                        files={k: getattr(self, k) for k in ("train_json", "val_json")})


def make_detect_config(recipe: str | Path | None = None, **overrides: Any) -> DetectConfig:
    """Defaults, then the recipe's values, then `overrides` (None values are ignored); checked. An overfit check
    given no epochs gets OVERFIT_EPOCHS, a cap: it stops as soon as it passes."""
    config = make_options(DetectConfig, recipe, **overrides)
    recipe_epochs = "epochs" in (load_recipe(recipe, DetectConfig) if recipe else {})
    if config.overfit and overrides.get("epochs") is None and not recipe_epochs:
        config = dataclasses.replace(config, epochs=OVERFIT_EPOCHS)
    return config
