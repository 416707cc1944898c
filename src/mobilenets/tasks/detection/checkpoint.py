"""Detector checkpoints: `best.safetensors` (weights, config, class names, category ids, input size) or a run's
`last.pt`, and a detector's initialisation from another detector or a backbone from a classifier (our
checkpoint, a torchvision/timm file or a published-weights name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._words import counted
from ...deploy.formats import EXPORTED_SUFFIXES, load_exported
from ...deploy.runtime import ExportedModel, ExportedNetwork
from ...recipes import checked_train_config
from ...weights.convert import Checkpoint, WeightsError, load_into, read_weights
from ...weights.io import model_from_checkpoint, require_architecture
from ...weights.registry import open_weights
from .. import checkpoint_task
from .model import CenterNet, create_detector

TASK = "detection"


@dataclass
class Detector:
    """A trained detector with what using it needs: class names, COCO category ids and its input size, and the
    file it came from."""

    model: CenterNet | ExportedNetwork
    classes: list[str]
    category_ids: list[int]
    image_size: int
    meta: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None


def load_detector(path: str | Path) -> Detector:
    """Load `best.safetensors` of `mobilenets detect train`, or a run's `last.pt`, in eval mode; or an exported
    detector (`mobilenets detect export`: `.onnx`, `.pte`), whose runtime then stands in for the network."""
    if Path(path).suffix in EXPORTED_SUFFIXES:
        return detector_from_exported(load_exported(path))
    return _from_checkpoint(read_weights(path))


def _from_checkpoint(checkpoint: Checkpoint) -> Detector:
    if checkpoint_task(checkpoint) != TASK or "classes" not in checkpoint.meta:
        raise WeightsError(f"{checkpoint.path}: not a detector saved by `mobilenets detect train`")
    model = model_from_checkpoint(checkpoint, create_detector).eval()
    return _detector_from(Path(checkpoint.path), model, model.num_classes, None, checkpoint.meta)


def detector_from_exported(exported: ExportedModel) -> Detector:
    """The detector an exported file holds, its runtime standing in for the network; WeightsError naming the
    file when its metadata is not a detector's or does not fit its network."""
    path, meta = exported.path, exported.metadata
    if not {"classes", "category_ids", "image_size"} <= meta.keys():
        raise WeightsError(f"{path}: holds no class names, category ids or input size (export a trained detector: "
                           f"mobilenets detect export --checkpoint best.safetensors ...)")
    if len(exported.output_shapes) != 3:
        raise WeightsError(f"{path}: has {len(exported.output_shapes)} output(s), not a CenterNet's three (heat map, "
                           f"size, offset): a classifier? use `mobilenets predict`")
    return _detector_from(path, ExportedNetwork(exported), exported.output_shapes[0][1], exported.input_shape[2:], meta)


def _detector_from(path: Path, network: CenterNet | ExportedNetwork, heatmap_channels: int | None,
                   input_size: tuple[int | None, ...] | None, meta: dict[str, Any]) -> Detector:
    """The Detector, once its metadata is found to fit its network (a class name and a category id per heat-map
    channel, `image_size` the input's, a train_config that is an object): else WeightsError naming `path`."""
    size = meta.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise WeightsError(f"{path}: its image_size must be a positive integer, got {size!r}")
    if input_size and None not in input_size and input_size != (size, size):
        raise WeightsError(f"{path}: its image_size ({size}) is not its input's ({'x'.join(map(str, input_size))})")
    classes, category_ids = meta.get("classes"), meta.get("category_ids")
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes) and isinstance(category_ids, list)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in category_ids)):
        raise WeightsError(f"{path}: its class names or category ids are not lists of names and integers")
    if len(classes) != len(category_ids) or \
            (heatmap_channels is not None and len(classes) != heatmap_channels):
        raise WeightsError(f"{path}: {counted(len(classes), 'class name')} and "
                           f"{counted(len(category_ids), 'category id')}, but its network has "
                           f"{counted(heatmap_channels, 'heat-map channel')}")
    if len(set(category_ids)) != len(category_ids):
        raise WeightsError(f"{path}: its category ids repeat ({category_ids})")
    checked_train_config(path, meta.get("train_config", {}))
    return Detector(network, classes, category_ids, size, dict(meta), path)


def pretrained_checkpoint(source: str | Path, *, backbone: str, width_mult: float, **options: Any) -> Checkpoint:
    """`source` opened as initial weights for a detector (`create_detector` options): refused if it contradicts
    the architecture asked for (a detector's backbone and options, or a classifier's name and width)."""
    checkpoint = open_weights(source, backbone)
    if checkpoint_task(checkpoint) == TASK:
        asked = {"backbone": backbone, "width_mult": width_mult, **options}
        require_architecture(checkpoint, {k: (v, f"--{'width' if k == 'width_mult' else k.replace('_', '-')}")
                                          for k, v in asked.items()})
    else:
        require_architecture(checkpoint, {"name": (backbone, "--backbone"), "width_mult": (width_mult, "--width")})
    return checkpoint


def pretrained_detector(source: str | Path, *, backbone: str, width_mult: float, num_classes: int,
                        **options: Any) -> tuple[CenterNet, str]:
    """A detector (`create_detector` options) initialised from `source` (see `pretrained_checkpoint`): another
    detector checkpoint of ours (everything; the heat-map head re-initialised when the class count differs), or a
    classifier (our checkpoint, a torchvision/timm file or a published-weights name) whose feature extractor
    becomes the backbone, its classifier dropped. Returns the detector and a one-line description of what was
    loaded."""
    checkpoint = pretrained_checkpoint(source, backbone=backbone, width_mult=width_mult, **options)
    if checkpoint_task(checkpoint) == TASK:
        detector = _from_checkpoint(checkpoint)
        model, note = detector.model.train(), ""
        if detector.model.num_classes != num_classes:
            model.reset_classes(num_classes)
            note = (f"; it has {len(detector.classes)} classes and this data {num_classes}: the heat-map head is "
                    f"re-initialised")
        return model, f"initialised from detector {source}{note}"
    preset = {k: v for k, v in checkpoint.build_options.items() if k != "width_mult"}
    model = create_detector(backbone=backbone, width_mult=width_mult, num_classes=num_classes, **options, **preset)
    load_into(model.backbone, checkpoint, features_only=True)
    return model, f"backbone {backbone} initialised from {source} ({checkpoint.layout} layout, classifier dropped)"
