"""CenterNet's loss: penalty-reduced focal loss on the heat map, L1 on size and offset at the object centres."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .targets import encode_targets, gather_at

PROBABILITY_FLOOR = 1e-4  # the sigmoid is clamped to [1e-4, 1 - 1e-4] so log never sees 0
_LOG_MIN, _LOG_MAX = math.log(PROBABILITY_FLOOR), math.log1p(-PROBABILITY_FLOOR)


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """Penalty-reduced pixel-wise focal loss: −Σ[(1−p)^α log p at peaks (target 1), (1−y)^β p^α log(1−p) elsewhere]
    over the number of peaks (at least 1), with log-sigmoids for stability."""
    logits = logits.float()
    log_p = F.logsigmoid(logits).clamp(_LOG_MIN, _LOG_MAX)
    log_not_p = F.logsigmoid(-logits).clamp(_LOG_MIN, _LOG_MAX)
    p, not_p = log_p.exp(), log_not_p.exp()
    peaks = target.eq(1)
    positive = torch.where(peaks, not_p.pow(alpha) * log_p, 0.0).sum()
    negative = torch.where(peaks, 0.0, (1 - target).pow(beta) * p.pow(alpha) * log_not_p).sum()
    return -(positive + negative) / peaks.sum().clamp(min=1)


def _masked_l1(maps: Tensor, target: Tensor, index: Tensor, mask: Tensor) -> Tensor:
    """Σ over the masked slots of |prediction − target|₁ (both coordinates), unnormalised."""
    return ((gather_at(maps, index).float() - target).abs().sum(2) * mask).sum()


def centernet_loss(outputs: tuple[Tensor, Tensor, Tensor], encoded: dict[str, Tensor], size_weight: float = 0.1,
                   offset_weight: float = 1.0) -> dict[str, Tensor]:
    """The paper's loss: focal + size_weight · L1(size) + offset_weight · L1(offset), each over the object count.

    The L1 terms sum both coordinates per object, as the paper writes them (the reference code averages them,
    halving the effective weights). Returns `loss` (the total) and its three parts.
    """
    heatmap_logits, size, offset = outputs
    mask = encoded["mask"]
    count = mask.sum().clamp(min=1)
    parts = {
        "heatmap": focal_loss(heatmap_logits, encoded["heatmap"]),
        "size": _masked_l1(size, encoded["size"], encoded["index"], mask) / count,
        "offset": _masked_l1(offset, encoded["offset"], encoded["index"], mask) / count,
    }
    return {"loss": parts["heatmap"] + size_weight * parts["size"] + offset_weight * parts["offset"], **parts}


class CenterNetCriterion(nn.Module):
    """The training loss from a batch's list of targets: encodes them for the output size, then the paper's loss
    (its total; `centernet_loss` gives the parts)."""

    def __init__(self, num_classes: int, stride: int = 4) -> None:
        super().__init__()
        self.num_classes, self.stride = num_classes, stride

    def forward(self, outputs: tuple[Tensor, Tensor, Tensor], targets: list[dict[str, Any]]) -> Tensor:
        encoded = encode_targets(targets, self.num_classes, tuple(outputs[0].shape[-2:]), self.stride)
        device = outputs[0].device
        return centernet_loss(outputs, {k: v.to(device, non_blocking=True) for k, v in encoded.items()})["loss"]
