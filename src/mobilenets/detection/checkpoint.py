"""Detector checkpoints: `best.safetensors` (weights, config, class names, category ids, input size) and the
backbone initialisation from a classification checkpoint, a torchvision/timm file or a published-weights name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..runs import load_training_state
from ..weights.convert import WeightsError, load_into, read_weights
from ..weights.registry import open_weights
from .model import CenterNet, create_detector

TASK = "detection"


@dataclass
class Detector:
    """A trained detector with what using it needs: class names, COCO category ids and its input size."""

    model: CenterNet
    classes: list[str]
    category_ids: list[int]
    image_size: int
    meta: dict[str, Any] = field(default_factory=dict)


def _build(config: dict[str, Any]) -> CenterNet:
    options = {k: v for k, v in config.items() if k != "name"}
    return create_detector(config.get("name", "centernet"), **options)


def _fill(model: CenterNet, state: dict[str, Any], path: Path) -> None:
    """Load `state` into `model`, failing with the file's name and the first key that does not fit."""
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    given = {k for k in state if not k.endswith("num_batches_tracked")}
    if expected != given:
        odd = sorted(expected ^ given)[0]
        raise WeightsError(f"{path}: does not fit the detector it describes ({odd!r} is "
                           f"{'missing' if odd in expected else 'unexpected'})")
    model.load_state_dict(state, strict=False)


def load_detector(path: str | Path) -> Detector:
    """Load `best.safetensors` of `mobilenets detect train`, or a run's `last.pt`, in eval mode."""
    path = Path(path)
    if path.suffix == ".pt":
        state = load_training_state(path, TASK)
        config, meta, tensors = dict(state["model_config"]), dict(state["meta"]), state["model"]
    else:
        checkpoint = read_weights(path)
        config, meta, tensors = dict(checkpoint.config or {}), checkpoint.meta, checkpoint.state
        if config.get("name") != "centernet" or "classes" not in meta:
            raise WeightsError(f"{path}: not a detector saved by `mobilenets detect train`")
    model = _build(config)
    _fill(model, tensors, path)
    return Detector(model.eval(), list(meta["classes"]), [int(i) for i in meta["category_ids"]],
                    int(meta["image_size"]), meta)


def _is_detector(path: Path) -> bool:
    """Whether `path` is a detector checkpoint of ours (best.safetensors or a detection run's last.pt)."""
    if not path.is_file():
        return False
    if path.suffix == ".safetensors":
        return (read_weights(path).config or {}).get("name") == "centernet"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(state, dict) and state.get("task") == TASK


def _from_detector(source: Path, num_classes: int, options: dict[str, Any]) -> tuple[CenterNet, str]:
    """Fine-tuning from another detector: all its weights, the heat-map head re-initialised if the classes differ."""
    detector = load_detector(source)
    config = detector.model.config
    for key, wanted in options.items():  # the architecture asked for must be the checkpoint's
        if (have := config.get(key)) != wanted:
            raise WeightsError(f"{source}: a detector with {key} {have}, but this run asks for {wanted} "
                               f"(pass --{key.replace('_mult', '').replace('_', '-')} {have})")
    model, note = detector.model.train(), ""
    if detector.model.num_classes != num_classes:
        model.reset_classes(num_classes)
        note = (f"; it has {len(detector.classes)} classes and this data {num_classes}: the heat-map head is "
                f"re-initialised")
    return model, f"initialised from detector {source}{note}"


def pretrained_detector(source: str | Path, *, backbone: str, width_mult: float, num_classes: int,
                        **options: Any) -> tuple[CenterNet, str]:
    """A detector (`create_detector` options) initialised from `source`: another detector checkpoint of ours
    (everything; the heat-map head re-initialised when the class count differs), or a classifier (our
    checkpoint, a torchvision/timm file or a published-weights name) whose feature extractor becomes the
    backbone, its classifier dropped. Returns the detector and a one-line description of what was loaded."""
    path = Path(source)
    if _is_detector(path):
        return _from_detector(path, num_classes, {"backbone": backbone, "width_mult": width_mult, **options})
    checkpoint, preset = open_weights(source, backbone)
    width = preset.pop("width_mult", (checkpoint.config or {}).get("width_mult"))
    if width is not None and float(width) != float(width_mult):
        raise WeightsError(f"{source}: a {backbone} of width {width}, but the detector's backbone has width "
                           f"{width_mult} (pass --width {width})")
    model = create_detector(backbone=backbone, width_mult=width_mult, num_classes=num_classes, **options, **preset)
    load_into(model.backbone, checkpoint, features_only=True)
    return model, f"backbone {backbone} initialised from {source} ({checkpoint.layout} layout, classifier dropped)"
