"""A trained classifier as its checkpoint describes it: `best.safetensors` (the deployable model, with class names
and preprocessing in its metadata) or a run's `last.pt` (read with weights_only=True: no code can run)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..data.transforms import Preprocess
from ..deploy.runtime import EXPORTED_SUFFIXES, ExportedModel, ExportedNetwork, load_exported
from ..models import MobileNet
from ..weights.convert import WeightsError, read_weights
from ..weights.io import model_from_checkpoint
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
    if checkpoint.task not in (None, TASK) or (checkpoint.config or {}).get("name") == "centernet":
        raise WeightsError(f"{path}: a {checkpoint.task or 'detection'} checkpoint, not a classifier")
    if "classes" not in checkpoint.meta or "preprocess" not in checkpoint.meta:
        raise WeightsError(f"{path}: holds no class names or preprocessing (was it written by `mobilenets train`?)")
    model = model_from_checkpoint(checkpoint).eval()
    return _checked(Path(path), model, model.num_classes, None, checkpoint.meta)


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
    return _checked(path, ExportedNetwork(exported), exported.output_shapes[0][-1], exported.input_shape[2:], meta)


def _checked(path: Path, network: MobileNet | ExportedNetwork, outputs: int | None,
             input_size: tuple[int | None, ...] | None, meta: dict[str, Any]) -> Classifier:
    """The Classifier, once its metadata is found to fit its network (class names for each output, the
    preprocessing's crop the input's size, a training recipe that can be read): else WeightsError naming `path`."""
    try:
        preprocess = Preprocess.from_dict(meta["preprocess"])
    except ValueError as e:
        raise WeightsError(f"{path}: {e}") from None
    classes = meta["classes"]
    if not isinstance(classes, list) or (outputs is not None and len(classes) != outputs):
        named = (f"{len(classes)} class name{'s' if len(classes) != 1 else ''}" if isinstance(classes, list)
                 else f"class names {classes!r}")
        raise WeightsError(f"{path}: {named}, but its network has {outputs} outputs")
    if input_size and None not in input_size and input_size != (preprocess.image_size,) * 2:
        raise WeightsError(f"{path}: its preprocessing crops {preprocess.image_size} px, but its network takes "
                           f"{'x'.join(map(str, input_size))}")
    classifier = Classifier(network, [str(c) for c in classes], preprocess, dict(meta), path)
    if "train_config" in meta:
        recorded_training(classifier)
    return classifier


def recorded_training(classifier: Classifier) -> TrainConfig:
    """The recipe the classifier was trained with, as far as its file recorded it (defaults elsewhere);
    WeightsError naming the file if the record is not a recipe."""
    recorded = classifier.meta.get("train_config", {})
    if not isinstance(recorded, dict):
        raise WeightsError(f"{classifier.source}: its train_config is not a JSON object")
    # where the run's data was and what device it ran on need not hold on this machine: checked where used
    here = {"data", "device"}
    known = {k: v for k, v in recorded.items() if k in TrainConfig.__dataclass_fields__ and k not in here}
    try:
        config = TrainConfig(**known)
        problems = config.problems()
    except (TypeError, ValueError, AttributeError) as e:
        problems = [str(e)]
    if problems:
        raise WeightsError(f"{classifier.source}: its train_config does not hold: {problems[0]}")
    return replace(config, **{k: recorded[k] for k in here & recorded.keys()})
