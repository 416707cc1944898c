"""Detection evaluation: a model over a loader, decoded, mapped to original-image pixels and scored with COCO box
AP (pycocotools, quietly)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from ...engine.loop import autocast, images_to
from ...progress import progress_bar
from .decode import Detections, decode
from .loss import CenterNetCriterion
from .transforms import boxes_to_original

# COCOeval.stats positions of the numbers reported (AR@100 is over all areas)
METRICS = {"map": 0, "map50": 1, "map75": 2, "map_small": 3, "map_medium": 4, "map_large": 5, "mar100": 8}


def _complete(ground_truth: dict[str, Any]) -> dict[str, Any]:
    """A copy of a COCO-format dict with the annotation fields COCOeval needs (`iscrowd`, `area`) filled in and
    the annotations numbered 1, 2, ...: pycocotools takes id 0 for "unmatched" and keys matches by id."""
    annotations = []
    for i, ann in enumerate(ground_truth.get("annotations", [])):
        ann = {"iscrowd": 0, **ann, "id": i + 1}
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        annotations.append(ann)
    return {"info": {}, **ground_truth, "annotations": annotations}  # pycocotools 2.0.7's loadRes needs "info"


def coco_evaluate(ground_truth: dict[str, Any], detections: Sequence[dict[str, Any]]) -> dict[str, float]:
    """COCO box metrics (`map`, `map50`, `map75`, `map_small/medium/large`, `mar100`) of COCO-result
    `detections` against a COCO-format `ground_truth`; all zeros without detections. An area range with no
    ground truth scores -1, as in pycocotools."""
    if not detections:
        return dict.fromkeys(METRICS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = _complete(ground_truth)
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes([dict(d) for d in detections]), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(evaluation.stats[i]) for name, i in METRICS.items()}


def to_coco_results(detections_per_image: Sequence[Detections], image_ids: Sequence[int],
                    category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO result dicts from per-image detections (xyxy boxes already in original-image pixels, labels 0..K-1),
    mapping label i to the dataset's `category_ids[i]`."""
    results = []
    for detections, image_id in zip(detections_per_image, image_ids, strict=True):
        for (x1, y1, x2, y2), score, label in zip(detections.boxes.tolist(), detections.scores.tolist(),
                                                  detections.labels.tolist(), strict=True):
            results.append({"image_id": int(image_id), "category_id": int(category_ids[label]),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return results


@dataclass
class DetectionEval:
    """COCO metrics (`map`, `map50`, ...), the mean validation loss, and the detections in COCO result format."""

    metrics: dict[str, float]
    loss: float
    results: list[dict[str, Any]]


@torch.no_grad()
def evaluate_detector(model: nn.Module, loader: Iterable, device: torch.device, ground_truth: dict[str, Any],
                      category_ids: Sequence[int], *, max_detections: int = 100, channels_last: bool = True,
                      amp: bool = False, progress: bool = True) -> DetectionEval:
    """Run `model` (eval mode) over `loader` of (images, targets with `letterbox`), decode the top
    `max_detections` per image, map boxes back to the original images and evaluate them against `ground_truth`."""
    model.eval()
    criterion = CenterNetCriterion(len(category_ids), getattr(model, "stride", 4))
    results: list[dict[str, Any]] = []
    total_loss, images = 0.0, 0
    for x, targets in progress_bar(loader, "eval", enabled=progress):
        x = images_to(x, device, channels_last)
        with autocast(device, amp):
            outputs = tuple(o.float() for o in model(x))
        total_loss += criterion(outputs, targets).item() * len(x)
        images += len(x)
        found = decode(*(o.cpu() for o in outputs), k=max_detections)
        mapped = [Detections(boxes_to_original(d.boxes, t["letterbox"]), d.scores, d.labels)
                  for d, t in zip(found, targets, strict=True)]
        results += to_coco_results(mapped, [t["image_id"] for t in targets], category_ids)
    return DetectionEval(coco_evaluate(ground_truth, results), total_loss / max(images, 1), results)
