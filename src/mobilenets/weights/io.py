"""Save and load our own models: safetensors tensors plus the config that rebuilds the network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from .._atomic import atomic_path
from ..models import MobileNet, build_model
from .convert import BUILD_ARGS, CONFIG_KEY, META_KEY, WeightsError, load_into, read_weights


def save(model: nn.Module, path: str | Path, *, meta: dict[str, Any] | None = None) -> Path:
    """Write `model` (a MobileNet or a detector: anything with a `config` dict) as safetensors with its config
    (and `meta`, e.g. class names and preprocessing) in the metadata, atomically: a temp file renamed into place,
    so a crash never leaves a half-written file."""
    path = Path(path)
    try:
        config = json.dumps(model.config)
        meta_json = json.dumps(meta or {})
    except TypeError:
        raise ValueError(f"{path}: cannot save a model built with non-name options (pass act_layer and "
                         f"norm_layer as names, e.g. 'relu6', 'frozen_batchnorm'): {model.config}") from None
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={CONFIG_KEY: config, META_KEY: meta_json, "format": "pt"})
    return path


def load(path: str | Path) -> MobileNet:
    """Rebuild and fill a model saved by `save`: the same architecture, options and tensors."""
    checkpoint = read_weights(path)
    if checkpoint.config is None:
        raise WeightsError(f"{path}: holds no mobilenets config; use create_model(name, weights=path)")
    args = {k: checkpoint.config[k] for k in BUILD_ARGS if k in checkpoint.config}
    model = build_model(args.pop("name"), **args, **checkpoint.build_options)
    load_into(model, checkpoint)
    return model
