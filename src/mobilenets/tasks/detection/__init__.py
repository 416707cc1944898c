"""CenterNet detection on the zoo's backbones: model, targets, loss, decoding and COCO evaluation."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import TaskDefinition, register_task
from .checkpoint import Detector, detector_from_exported, load_detector
from .config import DetectConfig, make_detect_config
from .decode import SCORE_THRESHOLD, Detections, decode, top_peaks
from .evaluate import coco_evaluate, evaluate_detector, to_coco_results
from .export import export_detector
from .inference import evaluate_checkpoint, predict_images
from .loss import CenterNetCriterion, centernet_loss, focal_loss
from .model import DETECTORS, CenterNet, create_detector
from .serve import ServedDetector
from .targets import draw_gaussian, encode_targets, gather_at, gaussian_radii, gaussian_radius
from .task import DETECTION, DetectionTask, train_detector
from .transforms import boxes_to_original


def _export(checkpoint: str | Path, output: str | Path, **options: Any) -> Path:
    return export_detector(load_detector(checkpoint), output, **options)


def _servable(detector: Detector, *, threshold: float | None = None, **_: Any) -> ServedDetector:
    return ServedDetector(detector, SCORE_THRESHOLD if threshold is None else threshold)


def _recognises(config: Mapping[str, Any] | None, meta: Mapping[str, Any]) -> bool:
    """A file written before tasks were recorded: a CenterNet's config, or an export's category ids."""
    return (config or {}).get("name") in DETECTORS or (config is None and "category_ids" in meta)


def _add_commands(subparsers: Any) -> None:
    from .cli import add_parser

    add_parser(subparsers)


DEFINITION = register_task(TaskDefinition(
    name=DETECTION.name, noun="detector", summary="CenterNet object detection on any zoo backbone",
    config=DetectConfig, make_config=make_detect_config, train=train_detector, load=load_detector,
    from_exported=detector_from_exported, export=_export, servable=_servable, add_commands=_add_commands,
    recognises=_recognises))

__all__ = [
    "DEFINITION",
    "DETECTION",
    "CenterNet",
    "CenterNetCriterion",
    "DetectionTask",
    "Detections",
    "Detector",
    "boxes_to_original",
    "centernet_loss",
    "coco_evaluate",
    "create_detector",
    "decode",
    "draw_gaussian",
    "encode_targets",
    "evaluate_checkpoint",
    "evaluate_detector",
    "focal_loss",
    "gather_at",
    "gaussian_radii",
    "gaussian_radius",
    "load_detector",
    "predict_images",
    "to_coco_results",
    "top_peaks",
    "train_detector",
]
