"""From CenterNet's outputs to boxes: heat-map peaks (a 3x3 max-pool in place of NMS), top-K, size and offset."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from .targets import gather_at


class Detections(NamedTuple):
    """One image's detections: `boxes` [N, 4] xyxy in network-input pixels, `scores` [N], `labels` [N] (0..K-1)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def local_maxima(heatmap_logits: Tensor) -> Tensor:
    """The logits where they equal their 3x3 neighbourhood's maximum, -inf elsewhere (CenterNet's NMS; peaks of
    the logits are the peaks of the sigmoid). The 3x3 max is taken as a row max of column maxes over shifted
    slices: on CPU 4x faster than max_pool2d in channels-last and 13x faster than in NCHW, in any layout."""
    padded = F.pad(heatmap_logits, [1, 1, 1, 1], value=float("-inf"))
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    pooled = torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])
    return torch.where(pooled == heatmap_logits, heatmap_logits, float("-inf"))


def top_k_flat(maps: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k values over each image of [B, C, H, W] `maps`, and their flat indices into C*H*W.

    Exact and ~10x faster than one top-k over all C*H*W values: the k best values lie in at most k rows, and those
    rows are among the k rows with the highest maxima, so top-k of the row maxima, then top-k of those rows."""
    batch, classes, height, width = maps.shape
    rows = maps.reshape(batch, classes * height, width)
    best_rows = rows.amax(2).topk(min(k, classes * height), 1).indices  # [B, R]
    candidates = rows.gather(1, best_rows.unsqueeze(2).expand(-1, -1, width)).flatten(1)  # [B, R * W]
    values, at = candidates.topk(min(k, candidates.shape[1]), 1)
    row = best_rows.gather(1, torch.div(at, width, rounding_mode="floor"))
    return values, row * width + at % width


def top_peaks(heatmap_logits: Tensor, size: Tensor, offset: Tensor, k: int = 100,
              stride: int = 4) -> tuple[Tensor, Tensor, Tensor]:
    """The k highest local maxima over all classes of each image, as boxes [B, k, 4] (xyxy, input pixels),
    scores [B, k] and labels [B, k]; tensor operations only, so it can join an exported graph."""
    height, width = heatmap_logits.shape[2:]
    logits, flat = top_k_flat(local_maxima(heatmap_logits), k)
    scores = logits.sigmoid()
    labels = torch.div(flat, height * width, rounding_mode="floor")
    index = flat - labels * height * width
    centers = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], 2) + gather_at(offset, index)
    half = gather_at(size, index) / 2
    return torch.cat([centers - half, centers + half], 2) * stride, scores, labels


def decode(heatmap_logits: Tensor, size: Tensor, offset: Tensor, *, k: int = 100, threshold: float = 0.0,
           stride: int = 4, nms_iou: float | None = None) -> list[Detections]:
    """Per image, the top-k peaks scoring above `threshold`, best first; with `nms_iou`, class-wise NMS too."""
    results = []
    for boxes, scores, labels in zip(*top_peaks(heatmap_logits, size, offset, k, stride), strict=True):
        keep = scores > threshold
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if nms_iou is not None:
            keep = batched_nms(boxes, scores, labels, nms_iou)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        results.append(Detections(boxes, scores, labels))
    return results
