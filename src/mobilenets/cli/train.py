"""`mobilenets train`: `mobilenets.train` from the command line; every option of TrainConfig is a flag, and can
also come from a YAML recipe (`--config`)."""

from __future__ import annotations

import argparse

from ..tasks.classification.config import TrainConfig, make_config
from ..tasks.classification.task import train
from . import add_training_command


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `train`; options left out keep the recipe's value, or the default."""
    add_training_command(subparsers, "train", TrainConfig, make_config, train,
                         help="train a classifier (default: on the built-in synthetic shapes)",
                         description="Train a classifier. With no options: the built-in synthetic shapes dataset "
                                     "and a fast recipe (3-5 minutes on 2 CPU cores).")
