"""Detection evaluation: the model over a loader, decoded, mapped to original-image pixels, COCO-evaluated."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..classification.engine import REFRESH_SECONDS
from .decode import Detections, decode
from .evaluate import coco_evaluate, to_coco_results
from .loss import centernet_loss
from .targets import encode_targets
from .transforms import boxes_to_original


class CenterNetCriterion(nn.Module):
    """The training loss from a batch's list of targets: encodes them for the output size, then the paper's loss."""

    def __init__(self, num_classes: int, stride: int = 4) -> None:
        super().__init__()
        self.num_classes, self.stride = num_classes, stride

    def forward(self, outputs: tuple[Tensor, Tensor, Tensor], targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        encoded = encode_targets(targets, self.num_classes, tuple(outputs[0].shape[-2:]), self.stride)
        device = outputs[0].device
        return centernet_loss(outputs, {k: v.to(device, non_blocking=True) for k, v in encoded.items()})


@dataclass
class DetectionEval:
    """COCO metrics (`map`, `map50`, ...), the mean validation loss, and the detections in COCO result format."""

    metrics: dict[str, float]
    loss: float
    results: list[dict[str, Any]]


@torch.no_grad()
def evaluate_detector(model: nn.Module, loader: Iterable, device: torch.device, ground_truth: dict[str, Any],
                      category_ids: Sequence[int], *, max_detections: int = 100, channels_last: bool = True,
                      progress: bool = True) -> DetectionEval:
    """Run `model` (eval mode) over `loader` of (images, targets with `letterbox`), decode the top
    `max_detections` per image, map boxes back to the original images and evaluate them against `ground_truth`."""
    model.eval()
    criterion = CenterNetCriterion(len(category_ids), getattr(model, "stride", 4))
    results: list[dict[str, Any]] = []
    total_loss, images = 0.0, 0
    for x, targets in tqdm(loader, desc="eval", disable=not progress, leave=False, unit="batch",
                           mininterval=REFRESH_SECONDS):
        x = x.to(device)
        outputs = model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
        total_loss += criterion(outputs, targets)["loss"].item() * len(x)
        images += len(x)
        found = decode(*(o.float().cpu() for o in outputs), k=max_detections)
        mapped = [Detections(boxes_to_original(d.boxes, t["letterbox"]), d.scores, d.labels)
                  for d, t in zip(found, targets, strict=True)]
        results += to_coco_results(mapped, [t["image_id"] for t in targets], category_ids)
    return DetectionEval(coco_evaluate(ground_truth, results), total_loss / max(images, 1), results)
