"""`mobilenets train`: `mobilenets.train` from the command line; every option of TrainConfig is a flag, and can
also come from a YAML recipe (`--config`)."""

from __future__ import annotations

import argparse

from ..classification.config import TrainConfig, make_config
from ..classification.task import train
from ..data.folder import DataError
from ..engine import TrainingError
from ..recipes import ConfigError, add_options, options_given
from ..weights.convert import WeightsError
from . import CommandError, RunFailed


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `train`; options left out keep the recipe's value, or the default."""
    p = subparsers.add_parser("train", help="train a classifier (default: on the built-in synthetic shapes)",
                              description="Train a classifier. With no options: the built-in synthetic shapes "
                                          "dataset and a fast recipe (3-5 minutes on 2 CPU cores).")
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML recipe (see configs/); options given here win")
    add_options(p, TrainConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the options (defaults < recipe < command line) and train."""
    try:
        config = make_config(args.config, **options_given(args, TrainConfig))
    except ConfigError as e:
        raise CommandError(str(e)) from None
    try:
        train(config)
    except (DataError, WeightsError, FileNotFoundError, ValueError) as e:
        raise CommandError(str(e)) from None
    except TrainingError as e:
        raise RunFailed(str(e)) from None
    return 0
