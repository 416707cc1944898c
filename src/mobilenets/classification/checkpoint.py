"""Checkpoints of a classification run: the resumable training state, and the classifier eval/predict load.

`last.pt` holds everything a resumed run needs (weights, optimizer, scheduler, history); it contains only
tensors and plain containers, so it is read with `weights_only=True`. `best.safetensors` is the deployable
model: weights plus its config, class names and preprocessing in the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.transforms import Preprocess
from ..models import MobileNet, build_model
from ..runs import load_training_state
from ..weights.convert import Checkpoint, load_into, read_torch_state, read_weights

TASK = "classification"

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
        state = load_training_state(path, TASK)
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
