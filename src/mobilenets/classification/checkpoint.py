"""A trained classifier as its checkpoint describes it: `best.safetensors` (the deployable model, with class names
and preprocessing in its metadata) or a run's `last.pt` (read with weights_only=True: no code can run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.transforms import Preprocess
from ..models import MobileNet
from ..weights.convert import WeightsError, read_weights
from ..weights.io import model_from_checkpoint

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
    checkpoint = read_weights(path)
    if checkpoint.task not in (None, TASK) or (checkpoint.config or {}).get("name") == "centernet":
        raise WeightsError(f"{path}: a {checkpoint.task or 'detection'} checkpoint, not a classifier")
    meta = checkpoint.meta
    if "classes" not in meta or "preprocess" not in meta:
        raise WeightsError(f"{path}: holds no class names or preprocessing (was it written by `mobilenets train`?)")
    model = model_from_checkpoint(checkpoint)
    return Classifier(model.eval(), list(meta["classes"]), Preprocess.from_dict(meta["preprocess"]), dict(meta))
