"""Save and load our own models: safetensors tensors plus the config that rebuilds the network."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from ..models import MobileNet, build_model
from .convert import _BUILD_ARGS, CONFIG_KEY, WeightsError, load_into, read_weights


def save(model: MobileNet, path: str | Path) -> Path:
    """Write `model` as safetensors with its config in the metadata, atomically (temp file, then rename)."""
    path = Path(path)
    try:
        config = json.dumps(model.config)
    except TypeError:
        raise ValueError(f"{path}: cannot save a model built with non-name options (pass act_layer and "
                         f"norm_layer as names, e.g. 'relu6', 'frozen_batchnorm'): {model.config}") from None
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(state, str(tmp), metadata={CONFIG_KEY: config, "format": "pt"})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(path: str | Path) -> MobileNet:
    """Rebuild and fill a model saved by `save`: the same architecture, options and tensors."""
    checkpoint = read_weights(path)
    if checkpoint.config is None:
        raise WeightsError(f"{path}: holds no mobilenets config; use create_model(name, weights=path)")
    args = {k: checkpoint.config[k] for k in _BUILD_ARGS if k in checkpoint.config}
    model = build_model(args.pop("name"), **args, **checkpoint.build_options)
    load_into(model, checkpoint)
    return model
