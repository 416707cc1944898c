"""Model names, their options, and `build_model`: a zoo network by name, randomly initialised (`create_model`,
above the zoo, also loads weights)."""

from __future__ import annotations

import functools
from collections.abc import Callable
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
    Architecture,
    dilated,
    minimalistic,
    reduced_tail,
    standard_convolutions,
)

# Each model: its table, and its own options as {name: (default, transform applied when not the default)}.
Transform = Callable[[Architecture], Architecture]
_V3_OPTIONS: dict[str, tuple[bool, Transform]] = {
    "minimal": (False, minimalistic), "reduced_tail": (False, reduced_tail), "dilated": (False, dilated),
}
_MODELS: dict[str, tuple[Architecture, dict[str, tuple[bool, Transform]]]] = {
    "mobilenet_v1": (MOBILENET_V1, {"separable": (True, standard_convolutions)}),
    "mobilenet_v2": (MOBILENET_V2, {}),
    "mobilenet_v3_large": (MOBILENET_V3_LARGE, _V3_OPTIONS),
    "mobilenet_v3_small": (MOBILENET_V3_SMALL, _V3_OPTIONS),
}
_COMMON_OPTIONS = ("act_layer", "norm_layer", "bn_eps", "bn_momentum", "tf_padding")
NORM_LAYERS: dict[str, type[nn.Module]] = {"batchnorm": nn.BatchNorm2d, "frozen_batchnorm": FrozenBatchNorm2d}


def list_models() -> list[str]:
    """Names accepted by `build_model` and `create_model`."""
    return sorted(_MODELS)


def architecture_options() -> dict[str, tuple[bool, str, list[str]]]:
    """Each model's own options (`separable`, `minimal`, ...) as {name: (default, what the non-default does, the
    models that take it)}: the one list the command line builds its flags from."""
    options: dict[str, tuple[bool, str, list[str]]] = {}
    for model, (_, own) in sorted(_MODELS.items()):
        for name, (default, transform) in own.items():
            summary = (transform.__doc__ or "").strip().splitlines()[0]
            options[name] = (default, summary, [*options.get(name, (None, None, []))[2], model])
    return options


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


def build_model(name: str, *, width_mult: float = 1.0, num_classes: int = 1000, dropout: float | None = None,
                **options: Any) -> MobileNet:
    """Build a randomly initialised zoo network; the options are `create_model`'s (mobilenets.factory), which
    also loads weights."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    _require_sizes(width_mult, num_classes, dropout)
    arch, own_options = _MODELS[name]
    unknown = sorted(set(options) - set(own_options) - set(_COMMON_OPTIONS))
    if unknown:
        allowed = sorted(set(own_options) | set(_COMMON_OPTIONS))
        raise TypeError(f"{name} has no option {unknown[0]!r}; its options are {', '.join(allowed)}")
    if wrong := [k for k in (*own_options, "tf_padding") if not isinstance(options.get(k, False), bool)]:
        raise TypeError(f"{wrong[0]} must be True or False, got {options[wrong[0]]!r}")
    flags = {k: options.get(k, default) for k, (default, _) in own_options.items()}
    for flag, (default, transform) in own_options.items():
        if flags[flag] != default:
            arch = transform(arch)
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
