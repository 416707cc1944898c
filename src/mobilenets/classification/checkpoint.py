"""A trained classifier as its checkpoint describes it: `best.safetensors` (the deployable model, with class names
and preprocessing in its metadata) or a run's `last.pt` (read with weights_only=True: no code can run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.transforms import Preprocess
from ..deploy.runtime import EXPORTED_SUFFIXES, ExportedModel, ExportedNetwork, load_exported
from ..models import MobileNet
from ..weights.convert import WeightsError, read_weights
from ..weights.io import model_from_checkpoint

TASK = "classification"


@dataclass
class Classifier:
    """A trained model with what using it needs: class names and the preprocessing it was trained with."""

    model: MobileNet | ExportedNetwork
    classes: list[str]
    preprocess: Preprocess
    meta: dict[str, Any] = field(default_factory=dict)


def load_classifier(path: str | Path) -> Classifier:
    """Load `best.safetensors` / any model saved with class metadata, or a run's `last.pt`, in eval mode; or an
    exported classifier (`.onnx`, `.pte`), whose runtime then stands in for the network."""
    if Path(path).suffix in EXPORTED_SUFFIXES:
        return classifier_from_exported(load_exported(path))
    checkpoint = read_weights(path)
    if checkpoint.task not in (None, TASK) or (checkpoint.config or {}).get("name") == "centernet":
        raise WeightsError(f"{path}: a {checkpoint.task or 'detection'} checkpoint, not a classifier")
    meta = checkpoint.meta
    if "classes" not in meta or "preprocess" not in meta:
        raise WeightsError(f"{path}: holds no class names or preprocessing (was it written by `mobilenets train`?)")
    try:
        preprocess = Preprocess.from_dict(meta["preprocess"])
    except ValueError as e:
        raise WeightsError(f"{path}: {e}") from None
    model = model_from_checkpoint(checkpoint)
    classes = meta["classes"]
    if not isinstance(classes, list) or len(classes) != model.num_classes:
        raise WeightsError(f"{path}: its class names ({len(classes) if isinstance(classes, list) else classes!r}) "
                           f"do not match the model's {model.num_classes} outputs")
    return Classifier(model.eval(), [str(c) for c in classes], preprocess, dict(meta))


def classifier_from_exported(exported: ExportedModel) -> Classifier:
    """The classifier an exported file holds, its runtime standing in for the network; WeightsError naming the
    file when its metadata is not a classifier's."""
    path, meta = exported.path, exported.metadata
    if "classes" not in meta or "preprocess" not in meta:
        raise WeightsError(f"{path}: holds no class names or preprocessing (export a trained classifier: "
                           f"mobilenets export --checkpoint best.safetensors ...)")
    try:
        preprocess = Preprocess.from_dict(meta["preprocess"])
    except ValueError as e:
        raise WeightsError(f"{path}: {e}") from None
    return Classifier(ExportedNetwork(exported), [str(c) for c in meta["classes"]], preprocess, dict(meta))
