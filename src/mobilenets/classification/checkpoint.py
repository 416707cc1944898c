"""Checkpoints of a classification run: the resumable training state, and the classifier eval/predict load.

`last.pt` holds everything a resumed run needs (weights, optimizer, scheduler, history); it contains only
tensors and plain containers, so it is read with `weights_only=True`. `best.safetensors` is the deployable
model: weights plus its config, class names and preprocessing in the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_path
from ..data.transforms import Preprocess
from ..models import MobileNet, build_model
from ..weights.convert import Checkpoint, load_into, read_torch_state, read_weights

STATE_FORMAT = "mobilenets.classification.train-state"


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Write the training state atomically: a kill at any moment leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": STATE_FORMAT, **state}, tmp)


def load_training_state(path: Path) -> dict[str, Any]:
    """Read `last.pt` safely (weights_only) and check it is a training state of ours."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable training checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a mobilenets training checkpoint")
    return state


@dataclass
class Classifier:
    """A trained model with what using it needs: class names and the preprocessing it was trained with."""

    model: MobileNet
    classes: list[str]
    preprocess: Preprocess
    meta: dict[str, Any] = field(default_factory=dict)


def load_classifier(path: str | Path) -> Classifier:
    """Load `best.safetensors` / any model saved with class metadata, or a run's `last.pt`, in eval mode."""
    path = Path(path)
    if path.suffix == ".pt" and path.is_file():
        state = load_training_state(path)
        config, meta = dict(state["model_config"]), state["meta"]
        checkpoint = Checkpoint(path, "mobilenets", read_torch_state(path), config=config, meta=meta)
    else:
        checkpoint = read_weights(path)
        if checkpoint.config is None:
            raise ValueError(f"{path}: holds no mobilenets config; it is not a classifier saved by mobilenets")
        config, meta = dict(checkpoint.config), checkpoint.meta
    if "classes" not in meta or "preprocess" not in meta:
        raise ValueError(f"{path}: holds no class names or preprocessing (was it written by `mobilenets train`?)")
    name = config.pop("name")
    model = build_model(name, **config)
    load_into(model, checkpoint)
    return Classifier(model.eval(), list(meta["classes"]), Preprocess.from_dict(meta["preprocess"]), dict(meta))
