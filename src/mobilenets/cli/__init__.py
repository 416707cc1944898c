"""The `mobilenets` command line: a thin layer that parses arguments, calls the API and prints.

Each command is one module of this package listed in COMMANDS; it exposes `add_parser(subparsers)`, which adds
its subparser and sets `run(args) -> int` as that parser's default. The helpers here are what commands share:
model-selection arguments, argument validators, and `CommandError` for user errors.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from typing import Any, NoReturn

from .. import __version__
from ..models import MobileNet, create_model, list_models

COMMANDS = ("profile", "train", "evaluate", "predict", "export", "bench", "detect")
MODEL_FLAGS = ("separable", "minimal", "reduced_tail", "dilated")


class CommandError(Exception):
    """A user error: `main` prints it as one `mobilenets: error: ...` line and exits with status 2."""


class RunFailed(Exception):
    """Valid input, but the work failed (e.g. training diverged): one line, exit status 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but an argument error is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"mobilenets: error: {message} (see '{self.prog} --help')\n")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (a width multiplier)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _int_at_least(minimum: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
    return value


def resolution(text: str) -> int:
    """argparse type: an input size in pixels, at least 32 (the networks' total stride)."""
    return _int_at_least(32, text)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (epochs, batch size, image size)."""
    return _int_at_least(1, text)


def num_classes(text: str) -> int:
    """argparse type: a class count >= 0 (0: no classifier)."""
    return _int_at_least(0, text)


def add_model_arguments(parser: argparse.ArgumentParser, *, name_required: bool = True) -> None:
    """NAME, --width, --num-classes and the model options, as every command that builds a network takes them."""
    parser.add_argument("name", metavar="NAME", choices=list_models(), nargs=None if name_required else "?",
                        help=f"one of {', '.join(list_models())}")
    parser.add_argument("--width", type=positive_float, default=1.0, metavar="W", help="width multiplier α (1.0)")
    parser.add_argument("--num-classes", type=num_classes, default=1000, metavar="K", help="classes (1000)")
    options = parser.add_argument_group("model options (only those of the chosen model are accepted)")
    options.add_argument("--separable", action=argparse.BooleanOptionalAction, default=None,
                         help="mobilenet_v1: depthwise separable layers (default) or standard 3x3 convolutions")
    options.add_argument("--minimal", action="store_true", default=None,
                         help="V3: minimalistic (no SE, no hard-swish, 3x3 kernels)")
    options.add_argument("--reduced-tail", action="store_true", default=None, help="V3: halve the last stage")
    options.add_argument("--dilated", action="store_true", default=None, help="V3: output stride 16")


def model_from_args(args: argparse.Namespace) -> MobileNet:
    """Build the network `add_model_arguments` described; only the model options given are passed on."""
    options: dict[str, Any] = {k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k) is not None}
    try:
        return create_model(args.name, width_mult=args.width, num_classes=args.num_classes, **options)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    """The `mobilenets` parser with every command in COMMANDS registered."""
    parser = ArgumentParser(prog="mobilenets", description="MobileNet V1/V2/V3 model zoo.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mobilenets` console script and of `python -m mobilenets`; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CommandError as exc:
        print(f"mobilenets: error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"mobilenets: error: {exc}", file=sys.stderr)
        return 1
