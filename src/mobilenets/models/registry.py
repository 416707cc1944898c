"""Model names, their options, and `build_model`: a zoo network by name, randomly initialised (`create_model`,
above the zoo, also loads weights)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from .layers import LayerFactory, ModuleFactory, resolve_activation
from .mobilenet import MobileNet, build_mobilenet
from .specs import (
    MOBILENET_V1,
    MOBILENET_V2,
    MOBILENET_V3_LARGE,
    MOBILENET_V3_SMALL,
    SHORTCUTS,
    Architecture,
    dilated,
    hardswish_from,
    minimalistic,
    nonlinear_bottlenecks,
    reduced_tail,
    standard_convolutions,
    swish,
    without_se,
)


@dataclass(frozen=True)
class ArchitectureOption:
    """One of a model's own options: its default, how a value changes the table, and the values it takes
    (`kind`, and `choices` when only some are allowed, or `interval` (low, high] for a number)."""

    default: Any
    apply: Callable[[Architecture, Any], Architecture]
    summary: str
    kind: type = bool
    choices: tuple[Any, ...] = ()
    interval: tuple[float, float] | None = None


def _flag(transform: Callable[[Architecture], Architecture], default: bool = False) -> ArchitectureOption:
    """An on/off option whose non-default value applies `transform` (its docstring's first line says what)."""
    return ArchitectureOption(default, lambda arch, value: transform(arch),
                              (transform.__doc__ or "").strip().splitlines()[0])


def _field(name: str, summary: str, kind: type, choices: tuple[Any, ...] = (),
           interval: tuple[float, float] | None = None) -> ArchitectureOption:
    """An option that sets the Architecture field `name`."""
    default = next(f.default for f in dataclasses.fields(Architecture) if f.name == name)
    return ArchitectureOption(default, lambda arch, value: dataclasses.replace(arch, **{name: value}), summary,
                              kind, choices, interval)


_INVERTED_RESIDUAL_OPTIONS = {
    "linear_bottleneck": _flag(nonlinear_bottlenecks, default=True),
    "shortcut": _field("shortcut", "which tensors the shortcuts join (V2 paper, Figure 6b)", str, SHORTCUTS),
}
_V3_OPTIONS = {
    "minimal": _flag(minimalistic), "reduced_tail": _flag(reduced_tail), "dilated": _flag(dilated),
    **_INVERTED_RESIDUAL_OPTIONS,
    "se": _flag(without_se, default=True),
    "se_ratio": _field("se_ratio", "squeeze width over expanded width", float, interval=(0, 1)),
    "se_gate": _field("se_gate", "the squeeze-excitation's gate", str, ("hardsigmoid", "sigmoid")),
    "hardswish_from": ArchitectureOption(None, hardswish_from, "ReLU before the first layer this wide (at α = 1), "
                                                               "hard-swish from it on (V3 paper's h-swish @N)", int),
    "swish": _flag(swish),
}
_MODELS: dict[str, tuple[Architecture, dict[str, ArchitectureOption]]] = {
    "mobilenet_v1": (MOBILENET_V1, {"separable": _flag(standard_convolutions, default=True)}),
    "mobilenet_v2": (MOBILENET_V2, _INVERTED_RESIDUAL_OPTIONS),
    "mobilenet_v3_large": (MOBILENET_V3_LARGE, _V3_OPTIONS),
    "mobilenet_v3_small": (MOBILENET_V3_SMALL, _V3_OPTIONS),
}
_COMMON_OPTIONS = ("act_layer", "norm_layer", "bn_eps", "bn_momentum", "tf_padding")
NORM_LAYERS: dict[str, type[nn.Module]] = {"batchnorm": nn.BatchNorm2d, "frozen_batchnorm": FrozenBatchNorm2d}


def list_models() -> list[str]:
    """Names accepted by `build_model` and `create_model`."""
    return sorted(_MODELS)


def architecture_options() -> dict[str, tuple[ArchitectureOption, list[str]]]:
    """Each model's own options (`separable`, `minimal`, `shortcut`, ...) and the models that take them: the one
    list the command line builds its flags from."""
    options: dict[str, tuple[ArchitectureOption, list[str]]] = {}
    for model, (_, own) in sorted(_MODELS.items()):
        for name, option in own.items():
            options[name] = (option, [*options.get(name, (None, []))[1], model])
    return options


def _checked(name: str, option: ArchitectureOption, value: Any) -> Any:
    """`value` if `option` takes it (an int where a float is wanted becomes a float); TypeError or ValueError
    naming the option otherwise."""
    if value is None and option.default is None:
        return None
    if option.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, option.kind) or (option.kind is not bool and isinstance(value, bool)):
        raise TypeError(f"{name} must be {'True or False' if option.kind is bool else 'a ' + option.kind.__name__}"
                        f", got {value!r}")
    if option.choices and value not in option.choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, option.choices))}, got {value!r}")
    if option.interval and not option.interval[0] < value <= option.interval[1]:
        raise ValueError(f"{name} must be in ({option.interval[0]}, {option.interval[1]}], got {value!r}")
    return value


def _norm_factory(norm_layer: str | ModuleFactory, eps: float, momentum: float) -> ModuleFactory:
    if isinstance(norm_layer, str):
        if norm_layer not in NORM_LAYERS:
            raise ValueError(f"unknown norm_layer {norm_layer!r}; choose from {sorted(NORM_LAYERS)}")
        cls = NORM_LAYERS[norm_layer]
        return functools.partial(cls, eps=eps) if cls is FrozenBatchNorm2d else functools.partial(
            cls, eps=eps, momentum=momentum)
    return norm_layer


MAX_WIDTH = 4.0  # the papers go to 1.4; beyond 4 a network outgrows a phone and, soon, memory


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _require_sizes(width_mult: Any, num_classes: Any, dropout: Any) -> None:
    """ValueError (TypeError for a wrong type) naming the argument that is out of range."""
    if not _real(width_mult):
        raise TypeError(f"width_mult must be a number, got {width_mult!r}")
    if not 0 < width_mult <= MAX_WIDTH:
        raise ValueError(f"width_mult must be in (0, {MAX_WIDTH:g}], got {width_mult}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise TypeError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    if dropout is not None and not (_real(dropout) and 0 <= dropout < 1):
        raise ValueError(f"dropout must be None or in [0, 1), got {dropout!r}")


def _applied(arch: Architecture, own_options: dict[str, ArchitectureOption], flags: dict[str, Any]) -> Architecture:
    for flag, option in own_options.items():
        if flags[flag] != option.default:
            arch = option.apply(arch, flags[flag])
    return arch


def _in_effect(arch: Architecture) -> Architecture:
    """`arch` with the fields that shape no layer set to their defaults: the squeeze-excitation's when no row
    has one."""
    if any(getattr(row, "se", False) for row in arch.rows):
        return arch
    return dataclasses.replace(arch, se_ratio=Architecture.se_ratio, se_gate=Architecture.se_gate)


def _idle(arch: Architecture, own_options: dict[str, ArchitectureOption], flags: dict[str, Any]) -> list[str]:
    """The options set in `flags` that change nothing in `arch` beside the others (e.g. `swish` with `minimal`,
    which leaves no hard-swish to replace)."""
    built = _in_effect(_applied(arch, own_options, flags))
    return [flag for flag, value in flags.items() if value != own_options[flag].default
            and _in_effect(_applied(arch, own_options, {**flags, flag: own_options[flag].default})) == built]


def _checked_flags(name: str, options: dict[str, Any]) -> tuple[Architecture, dict[str, ArchitectureOption],
                                                                 dict[str, Any]]:
    """`name`'s table, its own options and their values from `options` (defaults where not given), checked."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    arch, own_options = _MODELS[name]
    unknown = sorted(set(options) - set(own_options) - set(_COMMON_OPTIONS))
    if unknown:
        allowed = sorted(set(own_options) | set(_COMMON_OPTIONS))
        raise TypeError(f"{name} has no option {unknown[0]!r}; its options are {', '.join(allowed)}")
    return arch, own_options, {k: _checked(k, option, options.get(k, option.default))
                               for k, option in own_options.items()}


def idle_options(name: str, options: dict[str, Any]) -> list[str]:
    """The architecture options among `options` that change nothing beside the others: `build_model` refuses
    them, and a model file that recorded one (saved before they were refused) is built without it."""
    return _idle(*_checked_flags(name, options))


def without_idle_options(config: dict[str, Any]) -> dict[str, Any]:
    """A model file's `build_model` arguments (`name` among them) less the options that change nothing beside the
    others (`idle_options`), which a file saved before they were refused can hold: the same network, rebuilt. As
    they are where they cannot be built: `build_model` then says why."""
    options = {k: v for k, v in config.items() if k not in ("name", "width_mult", "num_classes", "dropout")}
    try:
        idle = idle_options(config.get("name"), options)
    except (TypeError, ValueError):
        return config
    return {k: v for k, v in config.items() if k not in idle}


def build_model(name: str, *, width_mult: float = 1.0, num_classes: int = 1000, dropout: float | None = None,
                **options: Any) -> MobileNet:
    """Build a randomly initialised zoo network; the options are `create_model`'s (mobilenets.factory), which
    also loads weights."""
    arch, own_options, flags = _checked_flags(name, options)
    _require_sizes(width_mult, num_classes, dropout)
    if not isinstance(options.get("tf_padding", False), bool):
        raise TypeError(f"tf_padding must be True or False, got {options['tf_padding']!r}")
    if idle := _idle(arch, own_options, flags):  # recorded as if it had an effect, it would mislead
        flag = idle[0]
        others = ", ".join(f"{k}={v!r}" for k, v in flags.items() if k != flag and v != own_options[k].default)
        raise ValueError(f"{name}: {flag}={flags[flag]!r} changes nothing" + (f" with {others}" if others else ""))
    arch = _applied(arch, own_options, flags)
    tf_padding = bool(options.get("tf_padding", False))
    bn_eps = float(options.get("bn_eps", 1e-3 if tf_padding else 1e-5))
    act_layer = options.get("act_layer")
    layers = LayerFactory(
        norm_layer=_norm_factory(options.get("norm_layer", "batchnorm"), bn_eps, options.get("bn_momentum", 0.1)),
        act_override=None if act_layer is None else resolve_activation(act_layer),
        tf_padding=tf_padding,
    )
    config = {"name": name, "width_mult": width_mult, "num_classes": num_classes, "dropout": dropout,
              **flags, **{k: options[k] for k in _COMMON_OPTIONS if k in options}}
    if "bn_eps" not in options and tf_padding:
        config["bn_eps"] = bn_eps
    return build_mobilenet(arch, width_mult=width_mult, num_classes=num_classes, dropout=dropout, layers=layers,
                           config=config)
