"""A trained classifier as its checkpoint describes it: `best.safetensors` (the deployable model, with class names
and preprocessing in its metadata) or a run's `last.pt` (read with weights_only=True: no code can run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._words import counted
from ...data.transforms import Preprocess
from ...deploy.formats import EXPORTED_SUFFIXES, load_exported
from ...deploy.runtime import ExportedModel, ExportedNetwork
from ...models import MobileNet
from ...models.registry import without_idle_options
from ...recipes import checked_train_config, recorded_options
from ...weights.convert import WeightsError, read_weights
from ...weights.io import model_from_checkpoint
from .. import checkpoint_task
from .config import TrainConfig

TASK = "classification"


@dataclass
class Classifier:
    """A trained model with what using it needs: class names and the preprocessing it was trained with, and the
    file it came from."""

    model: MobileNet | ExportedNetwork
    classes: list[str]
    preprocess: Preprocess
    meta: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None


def load_classifier(path: str | Path) -> Classifier:
    """Load `best.safetensors` / any model saved with class metadata, or a run's `last.pt`, in eval mode; or an
    exported classifier (`.onnx`, `.pte`), whose runtime then stands in for the network."""
    if Path(path).suffix in EXPORTED_SUFFIXES:
        return classifier_from_exported(load_exported(path))
    checkpoint = read_weights(path)
    if (task := checkpoint_task(checkpoint)) != TASK:
        raise WeightsError(f"{path}: a {task} checkpoint, not a classifier")
    if "classes" not in checkpoint.meta or "preprocess" not in checkpoint.meta:
        raise WeightsError(f"{path}: holds no class names or preprocessing (was it written by `mobilenets train`?)")
    model = model_from_checkpoint(checkpoint).eval()
    return _classifier_from(Path(path), model, model.num_classes, None, checkpoint.meta)


def classifier_from_exported(exported: ExportedModel) -> Classifier:
    """The classifier an exported file holds, its runtime standing in for the network; WeightsError naming the
    file when its metadata is not a classifier's or does not fit its network."""
    path, meta = exported.path, exported.metadata
    if "classes" not in meta or "preprocess" not in meta:
        raise WeightsError(f"{path}: holds no class names or preprocessing (export a trained classifier: "
                           f"mobilenets export --checkpoint best.safetensors ...)")
    if len(exported.output_shapes) != 1:
        raise WeightsError(f"{path}: has {len(exported.output_shapes)} outputs, not a classifier's one (a detector? "
                           f"use `mobilenets detect`)")
    return _classifier_from(path, ExportedNetwork(exported), exported.output_shapes[0][-1],
                            exported.input_shape[2:], meta)


def _classifier_from(path: Path, network: MobileNet | ExportedNetwork, num_outputs: int | None,
                     input_size: tuple[int | None, ...] | None, meta: dict[str, Any]) -> Classifier:
    """The Classifier, once its metadata is found to fit its network (a class name per output, the
    preprocessing's crop the input's size, a train_config that is an object): else WeightsError naming `path`."""
    try:
        preprocess = Preprocess.from_dict(meta["preprocess"])
    except ValueError as e:
        raise WeightsError(f"{path}: {e}") from None
    classes = meta["classes"]
    if not isinstance(classes, list) or (num_outputs is not None and len(classes) != num_outputs):
        named = (counted(len(classes), "class name") if isinstance(classes, list)
                 else f"class names {classes!r}")
        raise WeightsError(f"{path}: {named}, but its network has {num_outputs} outputs")
    if not all(isinstance(c, str) for c in classes):
        raise WeightsError(f"{path}: its class names must be text, got "
                           f"{next(c for c in classes if not isinstance(c, str))!r}")
    if input_size and None not in input_size and input_size != (preprocess.image_size,) * 2:
        raise WeightsError(f"{path}: its preprocessing crops {preprocess.image_size} px, but its network takes "
                           f"{'x'.join(map(str, input_size))}")
    checked_train_config(path, meta.get("train_config", {}))
    return Classifier(network, list(classes), preprocess, dict(meta), path)


def recorded_training(classifier: Classifier) -> TrainConfig:
    """The recipe the classifier was trained with, as far as its file recorded it (defaults elsewhere; the
    device this machine's); ConfigError naming the file if the record is not a usable recipe."""
    recorded = checked_train_config(classifier.source, classifier.meta.get("train_config", {}))
    return recorded_options(TrainConfig, classifier.source, _without_idle_model_options(recorded))


def _without_idle_model_options(recorded: dict[str, Any]) -> dict[str, Any]:
    """`recorded` with its model options as `without_idle_options` rebuilds the network from them."""
    options = recorded.get("model_options")
    if not isinstance(options, dict):
        return recorded
    kept = without_idle_options({"name": recorded.get("model"), **options})
    return {**recorded, "model_options": {k: v for k, v in options.items() if k in kept}}
