"""`mobilenets train`: train a classifier; every option can also come from a YAML recipe (`--config`)."""

from __future__ import annotations

import argparse

from ..classification.config import AUTO_AUGMENT, OPTIMIZERS, SCHEDULES, ConfigError, make_config
from ..classification.train import TrainingError, train
from ..data.folder import DataError
from ..models import list_models
from ..weights.convert import WeightsError
from . import CommandError, RunFailed, num_classes, positive_float, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `train`; options left out keep the recipe's value, or the default."""
    p = subparsers.add_parser("train", help="train a classifier (default: on the built-in synthetic shapes)",
                              description="Train a classifier. With no options: the built-in synthetic shapes "
                                          "dataset and a fast recipe (about 5 minutes on 2 CPU cores).")
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML recipe (see configs/); options given here win")
    p.add_argument("--model", choices=list_models())
    p.add_argument("--width", type=positive_float, metavar="W", help="width multiplier")
    p.add_argument("--dropout", type=float, metavar="P")
    p.add_argument("--data", metavar="DIR", help="ImageFolder root (train/ and val/, or one folder + --val-split)")
    p.add_argument("--val-split", type=float, metavar="F", help="fraction of DIR held out for validation")
    p.add_argument("--image-size", type=positive_int, metavar="N")
    p.add_argument("--epochs", type=positive_int, metavar="N")
    p.add_argument("--batch-size", type=positive_int, metavar="N")
    p.add_argument("--lr", type=positive_float, metavar="X")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--warmup-epochs", type=float, metavar="N")
    p.add_argument("--label-smoothing", type=float, metavar="X")
    p.add_argument("--weight-decay", type=float, metavar="X")
    p.add_argument("--clip-grad", type=positive_float, metavar="NORM", help="clip the gradient norm")
    p.add_argument("--ema", action="store_true", default=None, help="evaluate and keep an EMA of the weights")
    p.add_argument("--pretrained", metavar="PATH", help="our checkpoint, a torchvision/timm file, or a "
                                                        "published-weights name")
    p.add_argument("--freeze-backbone", action="store_true", default=None, help="train only the classifier")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None, help="random horizontal flips")
    p.add_argument("--color-jitter", type=float, metavar="X")
    p.add_argument("--auto-augment", choices=AUTO_AUGMENT)
    p.add_argument("--random-erasing", type=float, metavar="P")
    p.add_argument("--workers", type=num_classes, metavar="N", help="data-loading processes")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--device", metavar="DEV", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--output", metavar="DIR", help="where checkpoints, metrics and plots go (runs/train)")
    p.add_argument("--resume", action="store_true", default=None, help="continue from OUTPUT/last.pt")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the options (defaults < recipe < command line) and train."""
    options = {k: v for k, v in vars(args).items() if k not in ("config", "run")}
    try:
        config = make_config(args.config, **options)
    except ConfigError as e:
        raise CommandError(str(e)) from None
    try:
        train(config)
    except (DataError, WeightsError, FileNotFoundError) as e:
        raise CommandError(str(e)) from None
    except TrainingError as e:
        raise RunFailed(str(e)) from None
    return 0
