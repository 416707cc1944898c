"""CenterNet training targets: Gaussian-splatted centre heat maps, and size/offset targets at the centre pixels.

Conventions shared by the loss and the decoder: maps are at `stride` 4; a centre c (input pixels) falls on the cell
floor(c / stride); `size` is (w, h) in output-map pixels; `offset` is c / stride - cell; `index` is y * w + x.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gaussian_radii(heights: Tensor, widths: Tensor, min_overlap: float = 0.7) -> Tensor:
    """`gaussian_radius` for tensors of box heights and widths (any shape), in float64."""
    if not 0 < min_overlap < 1:
        raise ValueError(f"min_overlap must be in (0, 1), got {min_overlap}")
    h, w, o = heights.double(), widths.double(), min_overlap
    # 1. both corners move the same way (a shifted box): IoU ≥ o ⇔ r² − (h+w)r + hw(1−o)/(1+o) ≥ 0
    r1 = _root(1.0, -(h + w), h * w * (1 - o) / (1 + o), smaller=True)
    # 2. both corners move inwards (a box inside): IoU ≥ o ⇔ 4r² − 2(h+w)r + (1−o)hw ≥ 0
    r2 = _root(4.0, -2 * (h + w), (1 - o) * h * w, smaller=True)
    # 3. both corners move outwards (a box around): IoU ≥ o ⇔ 4o·r² + 2o(h+w)r − (1−o)hw ≤ 0
    r3 = _root(4 * o, 2 * o * (h + w), -(1 - o) * h * w, smaller=False)
    return torch.minimum(torch.minimum(r1, r2), r3).clamp(min=0)


def _root(a: float, b: Tensor, c: Tensor, smaller: bool) -> Tensor:
    """The smaller or larger root of a·r² + b·r + c = 0 (a > 0; real roots in all three cases)."""
    sqrt_discriminant = (b * b - 4 * a * c).clamp(min=0).sqrt()
    return (-b - sqrt_discriminant) / (2 * a) if smaller else (-b + sqrt_discriminant) / (2 * a)


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CornerNet's radius rule: the largest r such that moving a box's corners by up to r keeps IoU ≥ min_overlap.

    The minimum over CornerNet's three cases (a shifted, a shrunken and a grown box), each the relevant root of a
    quadratic in r, floored at 0. The reference code (CornerNet, inherited by CenterNet) divides by 2 instead of 2a
    and takes the wrong roots (princeton-vl/CornerNet#110); these are the correct ones.
    """
    return float(gaussian_radii(torch.tensor(height), torch.tensor(width), min_overlap))


def _gaussian(dx: Tensor, dy: Tensor, sigma: Tensor | float) -> Tensor:
    return torch.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))


def draw_gaussian(heatmap: Tensor, center: tuple[int, int], radius: int) -> Tensor:
    """Splat exp(-d²/2σ²), σ = (2r+1)/6, within r pixels of `center` (x, y) into a 2-D `heatmap`, in place, keeping
    the element-wise maximum where objects overlap (a sum would create false peaks between them)."""
    x, y = center
    height, width = heatmap.shape
    y0, y1, x0, x1 = max(0, y - radius), min(height, y + radius + 1), max(0, x - radius), min(width, x + radius + 1)
    if y0 >= y1 or x0 >= x1:
        return heatmap
    dy = torch.arange(y0, y1, dtype=heatmap.dtype)[:, None] - y
    dx = torch.arange(x0, x1, dtype=heatmap.dtype)[None, :] - x
    region = heatmap[y0:y1, x0:x1]
    region.copy_(torch.maximum(region, _gaussian(dx, dy, (2 * radius + 1) / 6)))
    return heatmap


def encode_targets(targets: list[dict[str, Tensor]], num_classes: int, output_size: tuple[int, int], stride: int = 4,
                   max_objects: int = 128) -> dict[str, Tensor]:
    """Turn per-image `boxes` (xyxy, network-input pixels) and `labels` (0..K-1) into CenterNet's targets.

    Returns `heatmap` [B, K, h, w], `size` and `offset` [B, M, 2], `index` [B, M] (y * w + x) and `mask` [B, M]
    (1 where a slot holds an object). Boxes with no area or whose centre lies outside the map are dropped; every
    other box is drawn on the heat map, and the first `max_objects` of each image get size/offset slots.
    """
    height, width = output_size
    batch = len(targets)
    boxes = torch.cat([t["boxes"].reshape(-1, 4).float() for t in targets]) / stride
    labels = torch.cat([t["labels"].reshape(-1).long() for t in targets])
    image = torch.repeat_interleave(torch.arange(batch), torch.tensor([len(t["labels"]) for t in targets]))
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    sizes = boxes[:, 2:] - boxes[:, :2]
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep = (sizes > 0).all(1) & (centers >= 0).all(1) & (centers[:, 0] < width) & (centers[:, 1] < height)
    image, labels, sizes, centers = image[keep], labels[keep], sizes[keep], centers[keep]
    cells = centers.floor().long()

    heatmap = torch.zeros(batch * num_classes * height * width)
    if len(labels):
        radii = gaussian_radii(sizes[:, 1], sizes[:, 0]).floor().long()
        _splat(heatmap, (image * num_classes + labels), cells, radii, height, width)

    counts = torch.bincount(image, minlength=batch)
    slot = torch.arange(len(image)) - (counts.cumsum(0) - counts)[image]  # rank of each object in its image
    fits = slot < max_objects
    b, s = image[fits], slot[fits]
    encoded = {"size": torch.zeros(batch, max_objects, 2), "offset": torch.zeros(batch, max_objects, 2),
               "index": torch.zeros(batch, max_objects, dtype=torch.long), "mask": torch.zeros(batch, max_objects)}
    encoded["size"][b, s] = sizes[fits]
    encoded["offset"][b, s] = (centers - cells)[fits]
    encoded["index"][b, s] = cells[fits, 1] * width + cells[fits, 0]
    encoded["mask"][b, s] = 1.0
    return {"heatmap": heatmap.view(batch, num_classes, height, width), **encoded}


def _splat(heatmap: Tensor, channel: Tensor, cells: Tensor, radii: Tensor, height: int, width: int) -> None:
    """`draw_gaussian` for all objects at once: every object's (2R+1)² window, R the largest radius, with the
    pixels beyond its own radius or outside the map masked out, max-reduced into the flat `heatmap`."""
    reach = int(radii.max())
    d = torch.arange(-reach, reach + 1)
    dy, dx = d.view(1, -1, 1), d.view(1, 1, -1)
    r = radii.view(-1, 1, 1)
    ys, xs = cells[:, 1].view(-1, 1, 1) + dy, cells[:, 0].view(-1, 1, 1) + dx
    inside = (dy.abs() <= r) & (dx.abs() <= r) & (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    values = _gaussian(dx.float(), dy.float(), (2 * r.float() + 1) / 6)
    flat = (channel.view(-1, 1, 1) * height + ys) * width + xs
    heatmap.scatter_reduce_(0, flat[inside], values[inside], reduce="amax")


def gather_at(maps: Tensor, index: Tensor) -> Tensor:
    """Values of [B, C, H, W] `maps` at flat positions `index` [B, M] (y * W + x), as [B, M, C]."""
    flat = maps.flatten(2)
    return flat.gather(2, index.unsqueeze(1).expand(-1, flat.shape[1], -1)).transpose(1, 2)
