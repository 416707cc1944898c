"""From CenterNet's outputs to boxes: heat-map peaks (a 3x3 max-pool in place of NMS), top-K, size and offset."""

from __future__ import annotations

import math
from itertools import product
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from .targets import gather_at

SCORE_THRESHOLD = 0.3  # the score a detection needs to be shown (predict, serve) unless told otherwise
SPARSE_SHARE = 1 / 16  # `peaks_above` pays while at most this share of the heat map's rows reach over the floor


class Detections(NamedTuple):
    """One image's detections: `boxes` [N, 4] xyxy in network-input pixels, `scores` [N], `labels` [N] (0..K-1)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def local_maxima(heatmap_logits: Tensor) -> Tensor:
    """The logits where they equal their 3x3 neighbourhood's maximum, -inf elsewhere (CenterNet's NMS; peaks of
    the logits are the peaks of the sigmoid). The 3x3 max is taken as a row max of column maxes over shifted
    slices, fast in any memory layout on CPUs, where max_pool2d is slow (docs/benchmarks.md)."""
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
    return _as_boxes(*top_k_flat(local_maxima(heatmap_logits), k), size, offset, stride)


def _as_boxes(logits: Tensor, flat: Tensor, size: Tensor, offset: Tensor,
              stride: int) -> tuple[Tensor, Tensor, Tensor]:
    """Peaks given by their logits [B, M] and flat indices [B, M] into C*H*W as boxes [B, M, 4] (xyxy, input
    pixels), scores [B, M] and labels [B, M]."""
    height, width = size.shape[2:]
    labels = torch.div(flat, height * width, rounding_mode="floor")
    index = flat - labels * height * width
    centers = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], 2) + gather_at(offset, index)
    half = gather_at(size, index) / 2
    return torch.cat([centers - half, centers + half], 2) * stride, logits.sigmoid(), labels


def peaks_above(heatmap_logits: Tensor, floor: float, k: int) -> list[tuple[Tensor, Tensor]] | None:
    """Per image, the logits and flat indices (into C*H*W) of the k highest local maxima above `floor`, best
    first, found by testing only the logits above it against their 3x3 neighbours, in the rows whose maximum is
    above it: a trained heat map clears a detection threshold in few places, so this skips `local_maxima`'s passes
    over the whole map. None where over SPARSE_SHARE of the rows clear `floor`, as then those passes are faster.
    The same peaks as `top_k_flat(local_maxima(...))` but for the order among equal logits (and which of them
    make the k-th place)."""
    batch, classes, height, width = heatmap_logits.shape
    rows = heatmap_logits.reshape(-1, width)
    hit_rows = (rows.amax(1) > floor).nonzero().squeeze(1)
    if hit_rows.numel() > rows.shape[0] * SPARSE_SHARE:
        return None
    hit, x = (rows[hit_rows] > floor).nonzero().unbind(1)
    at, y = hit_rows[hit] * width + x, hit_rows[hit] % height
    logits = heatmap_logits.reshape(-1)
    values = logits[at]
    is_peak = torch.ones_like(values, dtype=torch.bool)
    for dy, dx in product((-1, 0, 1), repeat=2):
        # a neighbour clamped into the map is the logit itself or one of its true neighbours: as -inf padding
        neighbour = at + ((y + dy).clamp(0, height - 1) - y) * width + (x + dx).clamp(0, width - 1) - x
        is_peak &= values >= logits[neighbour]
    at, values = at[is_peak], values[is_peak]
    per_image = classes * height * width
    image = torch.div(at, per_image, rounding_mode="floor")
    peaks = []
    for b in range(batch):
        mine = image == b
        best, order = values[mine].topk(min(k, int(mine.sum())))
        peaks.append((best, at[mine][order] - b * per_image))
    return peaks


def decode(heatmap_logits: Tensor, size: Tensor, offset: Tensor, *, k: int = 100, threshold: float = 0.0,
           stride: int = 4, nms_iou: float | None = None) -> list[Detections]:
    """Per image, the top-k peaks scoring above `threshold`, best first; with `nms_iou`, class-wise NMS too."""
    heatmap_logits = heatmap_logits.float()  # half-precision logits would round across the threshold's logit
    peaks = None
    if 0 < threshold < 1:  # the floor sits just under the threshold's logit: `scores > threshold` decides
        peaks = peaks_above(heatmap_logits, math.log(threshold / (1 - threshold)) - 1e-4, k)
    if peaks is None:
        peaks = list(zip(*top_k_flat(local_maxima(heatmap_logits), k), strict=True))
    results = []
    for b, (logits, flat) in enumerate(peaks):
        boxes, scores, labels = (t[0] for t in _as_boxes(logits[None], flat[None], size[b:b + 1],
                                                         offset[b:b + 1], stride))
        keep = scores > threshold
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if nms_iou is not None:
            keep = batched_nms(boxes, scores, labels, nms_iou)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        results.append(Detections(boxes, scores, labels))
    return results
