"""The options the engine itself reads, whatever the task: optimisation, schedule, EMA, AMP, data loading,
seeding, output and resume. A task's config is a subclass that adds its own and may change these defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..models import MAX_WIDTH, build_model, list_models
from ..recipes import (
    MAX_RESOLUTION,
    count,
    option,
    options_dict,
    positive_float,
    positive_int,
    range_problems,
)

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = ("cosine", "step")
MAX_EPOCHS = 100_000  # beyond this a run is a typo, not a plan
# the built-in data sets' sizes: the classification set is held in memory (12 KB an image at 64 px)
MAX_SYNTHETIC_IMAGES = 1_000_000
# options that may change between an interrupted run and its resumption without changing the result
RESUMABLE_CHANGES = frozenset({"resume", "exist_ok", "workers", "output", "device"})


@dataclass
class TrainingOptions:
    """Everything the training loop depends on; the resolved values are written to the run's `config.yaml`."""

    epochs: int = option(8, "training epochs", type=positive_int)
    batch_size: int = option(64, "images per step, over all processes", type=positive_int)
    lr: float = option(0.01, "peak learning rate", type=positive_float)
    optimizer: str = option("adamw", "the optimizer", choices=OPTIMIZERS)
    momentum: float = option(0.9, "sgd and rmsprop momentum")
    rmsprop_alpha: float = option(0.9, "rmsprop's decay of the squared-gradient average")
    rmsprop_eps: float = option(0.0316, "rmsprop epsilon: sqrt of TensorFlow's 1e-3, which TF adds inside the root")
    weight_decay: float = option(0.05, "decoupled (adamw) or L2 weight decay; none on batch norm and biases")
    schedule: str = option("cosine", "cosine to zero, or step decay", choices=SCHEDULES)
    step_epochs: float = option(1.0, "step schedule: multiply the lr by gamma every this many epochs")
    gamma: float = option(0.98, "step schedule: the decay factor")
    warmup_epochs: float = option(0.3, "linear warm-up, in epochs")
    clip_grad: float | None = option(None, "clip the gradient norm to this", type=positive_float, metavar="NORM")
    ema: bool = option(False, "evaluate and keep an exponential moving average of the weights")
    ema_decay: float = option(0.9998, "the EMA's decay per step")
    amp: bool = option(True, "float16 autocast (CUDA only)")
    channels_last: bool = option(True, "channels-last memory order")
    workers: int | None = option(None, "data-loading processes (0 for built-in data, else up to 4)", type=count)
    seed: int = option(0, "seeds the initialisation, data order, augmentation and built-in data")
    output: str = option("runs/train", "where checkpoints, metrics and plots go; if it holds another run, the first "
                                       "free OUTPUT2, OUTPUT3, ...", metavar="DIR")
    exist_ok: bool = option(False, "train into OUTPUT even if it holds another run, replacing its files")
    resume: bool = option(False, "continue from OUTPUT/last.pt")
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...", metavar="DEV")

    def to_dict(self) -> dict[str, Any]:
        return options_dict(self)

    def problems(self) -> list[str]:
        """One line per invalid option."""
        return range_problems(
            positive={"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                      "step_epochs": self.step_epochs, "gamma": self.gamma, "rmsprop_eps": self.rmsprop_eps},
            nonnegative={"warmup_epochs": self.warmup_epochs, "weight_decay": self.weight_decay,
                         "workers": self.workers or 0, "seed": self.seed},
            choices={"optimizer": (self.optimizer, OPTIMIZERS), "schedule": (self.schedule, SCHEDULES)},
            fractions={"momentum": self.momentum, "rmsprop_alpha": self.rmsprop_alpha, "ema_decay": self.ema_decay},
            at_most={"epochs": (self.epochs, MAX_EPOCHS)}
        ) + device_problems(self.device) + ([] if str(self.output).strip() else
                                            ["output: an empty path (give '.' for this folder)"])




def synthetic_size_problems(train_size: int, val_size: int) -> list[str]:
    """Built-in data set sizes (`synthetic_train_size`, `synthetic_val_size`) that are not from 1 to
    MAX_SYNTHETIC_IMAGES."""
    sizes = {"synthetic_train_size": train_size, "synthetic_val_size": val_size}
    return range_problems(positive=sizes, nonnegative={}, choices={},
                          at_most={k: (v, MAX_SYNTHETIC_IMAGES) for k, v in sizes.items()})


def network_problems(option: str, name: str, width: float, image_size: int,
                     options: dict[str, Any] | None = None, options_name: str = "model_options") -> list[str]:
    """A zoo network (named by `option`), width multiplier, input size or model options (`options`, the
    network's own: see `build_model`) that cannot be built: refused before memory is spent on it."""
    problems = [] if name in list_models() else [f"{option}: unknown {name!r}; choose from {', '.join(list_models())}"]
    if not 0 < width <= MAX_WIDTH:
        problems.append(f"width: must be in (0, {MAX_WIDTH:g}], got {width}")
    if options and not problems:
        try:
            with torch.device("meta"):  # checks every option's name and value without allocating the network
                build_model(name, width_mult=width, num_classes=2, **options)
        except (TypeError, ValueError) as e:
            problems.append(f"{options_name}: {e}")
    if not 32 <= image_size <= MAX_RESOLUTION:
        problems.append(f"image_size: must be between 32 and {MAX_RESOLUTION}, got {image_size}")
    return problems


def device_problems(name: str) -> list[str]:
    """Why `name` is not a device this machine can train on (empty if it is)."""
    try:
        device = torch.device("cpu" if name == "auto" else name)
    except RuntimeError:
        return [f"device: unknown {name!r}; use auto, cpu, cuda or cuda:N"]
    if device.type == "cuda" and not torch.cuda.is_available():
        return [f"device: {name} asked for, but this machine has no CUDA GPU (use auto or cpu)"]
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        return [f"device: {name} asked for, but this machine has {torch.cuda.device_count()} GPU(s)"]
    if device.type not in ("cpu", "cuda"):
        return [f"device: {name} is not supported; use auto, cpu, cuda or cuda:N"]
    return []
