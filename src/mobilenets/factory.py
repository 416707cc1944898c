"""`create_model`: a zoo network, randomly initialised or filled with weights. It sits above the zoo (`models/`,
which knows nothing of files) and `weights/` (which reads files into the zoo's networks)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .models import MobileNet, build_model
from .models.registry import idle_options
from .weights.convert import Checkpoint, checkpoint_num_classes, load_into
from .weights.io import require_architecture
from .weights.registry import open_weights

ARGUMENT_NAMES = {"name": "name", "width_mult": "width_mult"}


def create_model(name: str, *, width_mult: float | None = None, num_classes: int | None = None,
                 dropout: float | None = None, weights: str | Path | None = None, **options: Any) -> MobileNet:
    """Build `name` ('mobilenet_v1', 'mobilenet_v2', 'mobilenet_v3_large', 'mobilenet_v3_small').

    Options: V1 `separable` (False: standard 3x3 convs); V2 and V3 `linear_bottleneck` (False: the projection's
    activation kept), `shortcut` ('bottleneck', 'expansion' or 'none'); V3 `minimal`, `reduced_tail`, `dilated`,
    `se` (False: no squeeze-excitation), `se_ratio`, `se_gate` ('hardsigmoid' or 'sigmoid'), `hardswish_from`
    (ReLU before the first layer that wide, hard-swish after), `swish` (swish for hard-swish); all models
    `act_layer` (name or class replacing every activation), `norm_layer` ('batchnorm', 'frozen_batchnorm' or a
    callable), `bn_eps`, `bn_momentum`, `tf_padding` (TensorFlow "SAME" padding and BN eps 1e-3). The README's
    table says more; `mobilenets.models.architecture_options()` lists them.
    Without `weights`: width 1.0 and 1000 classes unless given. `weights`: a torchvision or timm state_dict file
    (layout detected), one of ours (.safetensors, a run's last.pt), or the name of published weights
    (`mobilenets.weights.list_published()`), downloaded once and checked by sha256. The width and class count
    then default to the weights', and a width or class count that contradicts them is refused, naming both. The
    weights' own BN eps and padding are used unless given.
    """
    if weights is None:
        return build_model(name, width_mult=1.0 if width_mult is None else width_mult,
                           num_classes=1000 if num_classes is None else num_classes, dropout=dropout, **options)
    model, _ = pretrained_model(name, open_weights(weights, name), width_mult=width_mult, num_classes=num_classes,
                                dropout=dropout, **options)
    return model


def pretrained_model(name: str, checkpoint: Checkpoint, *, width_mult: float | None = None,
                     num_classes: int | None = None, dropout: float | None = None,
                     new_classifier: bool = False, argument_names: Mapping[str, str] = ARGUMENT_NAMES,
                     **options: Any) -> tuple[MobileNet, int | None]:
    """`name` filled from `checkpoint` (see `create_model`). With `new_classifier` (fine-tuning on other
    classes), a checkpoint whose class count differs from `num_classes` leaves the classifier freshly initialised,
    and its class count is returned. `argument_names` name the options in errors."""
    require_architecture(checkpoint, {"name": (name, argument_names["name"]),
                                      "width_mult": (width_mult, argument_names["width_mult"])})
    known = {**(checkpoint.config or {}), **checkpoint.build_options}
    width_mult = known.get("width_mult", 1.0) if width_mult is None else width_mult
    num_classes = known.get("num_classes", 1000) if num_classes is None else num_classes
    built = {k: v for k, v in known.items() if k not in ("name", "width_mult", "num_classes", "dropout")}
    for recorded in set(idle_options(name, {**built, **options})) - set(options):
        del built[recorded]  # a file saved before such options were refused: its network is the same without it
    model = build_model(name, width_mult=width_mult, num_classes=num_classes, dropout=dropout,
                        **{**built, **options})
    theirs = checkpoint_num_classes(model, checkpoint)
    dropped = theirs if new_classifier and theirs is not None and theirs != num_classes else None
    load_into(model, checkpoint, skip_classifier=dropped is not None)
    return model, dropped
