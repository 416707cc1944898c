"""The `mobilenets` command line: a thin layer that parses arguments, calls the API and prints.

Each command is one module of this package listed in COMMANDS; it exposes `add_parser(subparsers)`, which adds
its subparser and sets `run(args) -> int` as that parser's default. The helpers here are what commands share:
model-selection arguments, argument validators, and `CommandError` for user errors.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from .._version import __version__
from ..engine import TrainingError
from ..extras import MissingExtra
from ..models import MAX_WIDTH, MobileNet, architecture_options, build_model, list_models
from ..recipes import add_options, integer_at_least, number_in, options_given, path_text
from ..tasks import get_task, list_tasks

MAX_CLASSES = 100_000  # a classifier over more would hold gigabytes of weights (ImageNet-21k has 21,841 classes)
# the commands of this package; a task brings its own (`TaskDefinition.add_commands`: `mobilenets detect ...`)
COMMANDS = ("profile", "train", "evaluate", "predict", "export", "bench", "serve", "experiment")


# what the API raises for bad input: ValueError (ConfigError, DataError, WeightsError) or FileNotFoundError; a
# command lets them through, and `main` prints them as one line with exit status 2
BAD_INPUT = (ValueError, FileNotFoundError)


class CommandError(Exception):
    """A user error found by the command itself: `main` prints it as one `mobilenets: error: ...` line and exits
    with status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but an argument error is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"mobilenets: error: {message} (see '{self.prog} --help')\n")


def add_model_arguments(parser: argparse.ArgumentParser, *, name_required: bool = True) -> None:
    """NAME, --width, --num-classes and the model options, as every command that builds a network takes them."""
    parser.add_argument("name", metavar="NAME", choices=list_models(), nargs=None if name_required else "?",
                        help=f"one of {', '.join(list_models())}")
    parser.add_argument("--width", type=number_in(0, MAX_WIDTH), default=1.0, metavar="W",
                        help="width multiplier α (1.0)")
    parser.add_argument("--num-classes", type=integer_at_least(0, MAX_CLASSES), default=1000, metavar="K",
                        help="classes (1000; 0: no classifier)")
    options = parser.add_argument_group("model options (only those of the chosen model are accepted)")
    for name, (option, models) in architecture_options().items():
        flag, takers = f"--{name.replace('_', '-')}", ", ".join(models)
        if option.kind is not bool:
            shown = "" if option.default is None else f" ({option.default})"
            options.add_argument(flag, type=option.kind, choices=option.choices or None, default=None,
                                 metavar=None if option.choices else option.kind.__name__.upper(),
                                 help=f"{takers}: {option.summary}{shown}")
        elif option.default:  # on by default: --no-<name> gives the variant the summary describes
            options.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                 help=f"{takers}: on by default; --no-{flag[2:]}: {option.summary}")
        else:
            options.add_argument(flag, action="store_true", default=None, help=f"{takers}: {option.summary}")


def model_from_args(args: argparse.Namespace) -> MobileNet:
    """Build the network `add_model_arguments` described; only the model options given are passed on."""
    options = {k: getattr(args, k) for k in architecture_options() if getattr(args, k) is not None}
    try:
        return build_model(args.name, width_mult=args.width, num_classes=args.num_classes, **options)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def add_training_command(subparsers: argparse._SubParsersAction, name: str, kind: type,
                         make_config: Callable[..., Any], train: Callable[[Any], Any], **parser: str) -> None:
    """A command that trains: `--config` (a YAML recipe) and one flag per field of the config dataclass `kind`;
    it resolves defaults < recipe < flags with `make_config` and calls `train(config)`."""
    p = subparsers.add_parser(name, **parser)
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML recipe (see configs/); options given here win")
    add_options(p, kind)
    p.set_defaults(run=functools.partial(_train, kind, make_config, train))


def _train(kind: type, make_config: Callable[..., Any], train: Callable[[Any], Any], args: argparse.Namespace) -> int:
    train(make_config(args.config, **options_given(args, kind)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `mobilenets` parser with every command in COMMANDS and every task's commands registered."""
    parser = ArgumentParser(prog="mobilenets", description="MobileNet V1/V2/V3 model zoo.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    for task in map(get_task, list_tasks()):
        if task.add_commands is not None:
            task.add_commands(subparsers)
    return parser


def add_model_source(parser: argparse.ArgumentParser, what: str = "classifier") -> None:
    """--checkpoint (a training run's) or --model (an exported `what`: what ships is what is checked)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=path_text, metavar="C", help="best.safetensors or last.pt of a run")
    source.add_argument("--model", type=path_text, metavar="FILE",
                        help=f"an exported {what}: FILE.onnx (onnxruntime) or FILE.pte (ExecuTorch), with its class "
                             "names")


def model_source(args: argparse.Namespace) -> str:
    """The file `add_model_source`'s options name; CommandError for a --model that is not an exported file."""
    from ..deploy.formats import EXPORTED_SUFFIXES

    if args.model is not None and Path(args.model).suffix not in EXPORTED_SUFFIXES:
        raise CommandError(f"{args.model}: not an exported model (expected {' or '.join(EXPORTED_SUFFIXES)}; a "
                           f"training run's checkpoint goes to --checkpoint)")
    return args.checkpoint or args.model


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mobilenets` console script and of `python -m mobilenets`; returns the exit status."""
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, MissingExtra, *BAD_INPUT) as exc:  # bad input, or an extra to install: exit status 2
        print(f"mobilenets: error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:  # valid input, but the work failed (e.g. training diverged)
        print(f"mobilenets: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: what was written is whole (atomic writes); say so in a line
        print("mobilenets: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:  # more than this machine gives (a data set held in memory, say)
        print(f"mobilenets: error: {str(exc) or 'out of memory'}", file=sys.stderr)
        return 1
    except OSError as exc:  # the file system refused (a full disk, a permission); a line, not a traceback
        print(f"mobilenets: error: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}",
              file=sys.stderr)
        return 1
