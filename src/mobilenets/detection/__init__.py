"""CenterNet detection on the zoo's backbones: model, targets, loss, decoding and COCO evaluation."""

from .checkpoint import Detector, load_detector
from .decode import Detections, decode, top_peaks
from .evaluate import coco_evaluate, evaluate_detector, to_coco_results
from .inference import evaluate_checkpoint, predict_images
from .loss import CenterNetCriterion, centernet_loss, focal_loss
from .model import CenterNet, create_detector
from .targets import draw_gaussian, encode_targets, gather_at, gaussian_radii, gaussian_radius
from .task import DETECTION, DetectionTask, train_detector
from .transforms import boxes_to_original

__all__ = [
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
