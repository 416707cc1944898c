"""Run options as a dataclass, settable from a YAML recipe and overridden by the command line.

A task declares its options once, as a dataclass whose fields are made with `option` (default, help, and how the
command line reads it) and whose `problems()` lists what is wrong with a value. `make_options` fills it from
defaults < recipe < overrides, giving every value its field's type or failing with a one-line error;
`add_options` turns the same fields into command-line flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ._words import first_repeated

Options = TypeVar("Options")


class ConfigError(ValueError):
    """An invalid option or recipe; the message is one line and names the option or file."""


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    """Give a recipe or command-line value the field's declared type, or fail naming the option."""
    kind = str(field.type).replace(" | None", "")
    if value is None:
        if "None" in str(field.type):
            return None
        raise ConfigError(f"{field.name}: invalid value None (it needs a {kind})")
    try:
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "tuple[float, float]":
            low, high = (float(v) for v in value)
            return low, high
        if kind.startswith("dict"):
            value = key_values(value) if isinstance(value, str) else value
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{field.name}: invalid value {value!r}") from None
    if isinstance(value, list | tuple | dict | bool):  # a path or a name: a list's text is no folder's name
        raise ConfigError(f"{field.name}: invalid value {value!r} (it needs a path or a name)")
    return str(value)


def range_problems(*, positive: dict[str, float], nonnegative: dict[str, float],
                   choices: dict[str, tuple[Any, Sequence[str]]],
                   fractions: dict[str, float | None] | None = None,
                   at_most: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """One line per option out of range: not > 0, negative, not one of its allowed values, (a probability,
    a decay, None when not set) outside [0, 1), or over its limit (`at_most`: value, limit)."""
    problems = [f"{k}: must be > 0, got {v}" for k, v in positive.items() if not v > 0 or v == math.inf]
    problems += [f"{k}: must be >= 0, got {v}" for k, v in nonnegative.items() if not 0 <= v < math.inf]
    problems += [f"{k}: {v!r} is not one of {', '.join(allowed)}" for k, (v, allowed) in choices.items()
                 if v is not None and v not in allowed]
    problems += [f"{k}: at most {limit}, got {v}" for k, (v, limit) in (at_most or {}).items() if v > limit]
    return problems + [f"{k}: must be in [0, 1), got {v}" for k, v in (fractions or {}).items()
                       if v is not None and not 0 <= v < 1]


def path_problems(*, folders: dict[str, str | None] | None = None, files: dict[str, str | None] | None = None
                  ) -> list[str]:
    """One line per option naming a path that is missing or of the wrong kind (a file where a folder belongs, or
    the reverse); None values are options not given."""
    problems = []
    for kind, paths in (("folder", folders or {}), ("file", files or {})):
        for key, value in paths.items():
            if value is None:
                continue
            path = Path(value)
            if not path.exists():
                problems.append(f"{key}: {path}: no such {kind}")
            elif path.is_dir() != (kind == "folder"):
                problems.append(f"{key}: {path}: not a {kind}")
    return problems


def options_dict(options: Any) -> dict[str, Any]:
    """The options as plain YAML/JSON values (tuples become lists), as written to a run's config.yaml."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()}


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error rather than the last one winning."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [(key.tag, key.value) for key, _ in node.value
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge"]
        if repeated := first_repeated(keys):
            raise yaml.constructor.ConstructorError(None, None, f"{repeated[1]!r} is given twice", node.start_mark)
        return super().construct_mapping(node, deep)


def load_recipe(path: str | Path, kind: type) -> dict[str, Any]:
    """Read a YAML recipe: a mapping of `kind`'s fields (dashes or underscores)."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a YAML recipe") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror if isinstance(e, OSError) else 'not text'})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of options, got {type(raw).__name__}")
    values = {str(k).replace("-", "_"): v for k, v in raw.items()}
    if (repeated := first_repeated(str(k).replace("-", "_") for k in raw)) is not None:
        raise ConfigError(f"{path}: {repeated!r} is given twice (with dashes and with underscores)")
    if unknown := sorted(set(values) - {f.name for f in dataclasses.fields(kind)}):
        raise ConfigError(f"{path}: unknown option {unknown[0]!r}")
    return values


def checked_train_config(source: str | Path, recorded: Any) -> dict[str, Any]:
    """`recorded`, a model file's `train_config`, if it is an object; ConfigError naming `source` if not."""
    if not isinstance(recorded, dict):
        raise ConfigError(f"{source}: its train_config is not a JSON object")
    return recorded


def recorded_options(kind: type[Options], source: str | Path, recorded: Any, **overrides: Any) -> Options:
    """The options a model file recorded of the run that trained it (`train_config`), with `overrides` replacing
    some (None: that option's default), checked as `make_options` checks a recipe; the device the run used is
    not carried over. ConfigError naming `source` if the record is not a usable set of options."""
    fields = {f.name for f in dataclasses.fields(kind)}
    known = {k: v for k, v in checked_train_config(source, recorded).items()
             if k in fields and k not in overrides and k != "device"}
    try:
        return make_options(kind, **known, **overrides)
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{source}: its train_config does not hold: {e}") from None


def make_options(kind: type[Options], recipe: str | Path | None = None, **overrides: Any) -> Options:
    """Defaults, then the recipe's values, then `overrides` (None values are ignored); checked by `problems()`,
    whose message names the recipe when the problem comes with the recipe's values (is not there without them)."""
    fields = {f.name: f for f in dataclasses.fields(kind)}
    from_recipe = load_recipe(recipe, kind) if recipe else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    if unknown := sorted(set(given) - set(fields)):
        raise ConfigError(f"unknown option {unknown[0]!r}")
    try:
        coerced = {k: _coerce(fields[k], v) for k, v in from_recipe.items() if k not in given}
    except ConfigError as e:
        raise ConfigError(f"{recipe}: {e}") from None
    from_arguments = {k: _coerce(fields[k], v) for k, v in given.items()}
    options = kind(**coerced, **from_arguments)
    if problems := options.problems():
        with_the_recipe = coerced and problems[0] not in kind(**from_arguments).problems()
        raise ConfigError(f"{recipe}: {problems[0]}" if with_the_recipe else problems[0])
    return options


def path_text(text: str) -> str:
    """An argparse type for a file or folder path: refuses the empty one, which would silently mean here."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (give '.' for this folder)")
    return text


def integer_at_least(minimum: int, at_most: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum` (and <= `at_most`, if given)."""
    wanted = f"an integer >= {minimum}" if at_most is None else f"an integer from {minimum} to {at_most}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum or (at_most is not None and value > at_most):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value
    return parse


MAX_RESOLUTION = 4096  # an input size beyond this is a typo, and its activations would not fit in memory
positive_int, count = integer_at_least(1), integer_at_least(0)
resolution = integer_at_least(32, MAX_RESOLUTION)  # 32: the networks' total stride


def number_in(low: float, high: float, *, low_open: bool = True, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a number in the interval from `low` to `high` (open or closed at each end)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (above and below):
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text!r}")
        return value
    return parse


def key_values(text: str) -> dict[str, Any]:
    """argparse type: `k=v,k=v` as a dict, each value read as YAML (`false`, `0.5`, `none` stay bool, number,
    text)."""
    values = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE pairs separated by commas, got {item!r}")
        values[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return values


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (a width multiplier, a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def option(default: Any, help: str, **flag: Any) -> Any:
    """A config field: its default, its help line, and `flag`, what argparse needs beyond the field's type
    (`type=positive_int`, `choices=...`, `metavar=...`)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag})


def add_options(parser: argparse.ArgumentParser, kind: type) -> None:
    """One flag per field of the `option`-made dataclass `kind` (`--batch-size` for `batch_size`), its own fields
    before inherited ones, each with no default of its own, so that a value left out keeps the recipe's or the
    field's default."""
    own = list(vars(kind).get("__annotations__", {}))
    for f in sorted(dataclasses.fields(kind), key=lambda f: own.index(f.name) if f.name in own else len(own)):
        flag = dict(f.metadata.get("flag", {}))
        kind_name = str(f.type).replace(" | None", "")
        shown = list(f.default) if isinstance(f.default, tuple) else f.default
        arguments: dict[str, Any] = {"default": None, "help": f.metadata.get("help", "") +
                                     ("" if shown is None else f" ({shown})")}
        if kind_name == "bool":
            arguments["action"] = argparse.BooleanOptionalAction
        elif kind_name == "tuple[float, float]":
            arguments |= {"nargs": 2, "type": float, "metavar": ("LOW", "HIGH")}
        else:
            arguments["type"] = {"int": int, "float": float}.get(kind_name, str)
            if "choices" not in flag:
                arguments["metavar"] = {"int": "N", "float": "X"}.get(kind_name, "VALUE")
        parser.add_argument(f"--{f.name.replace('_', '-')}", **{**arguments, **flag})


def options_given(args: argparse.Namespace, kind: type) -> dict[str, Any]:
    """The values of `kind`'s fields that the command line gave (None: left out)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(kind) if getattr(args, f.name, None) is not None}
