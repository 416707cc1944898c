"""SyntheticDetection: a built-in, procedurally generated detection set (several shapes per image, with boxes).

Each image has its own random streams keyed by (seed, split, index): one for the layout (which shapes, where, how
big), one for the pixels (colours, clutter, noise). Boxes and the COCO ground truth therefore come from the layout
alone, without drawing, and neither depends on worker count or access order.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from ..._atomic import write_text
from ...data.synthetic import (
    DISK,
    MIN_COLOUR_DISTANCE,
    SHAPE_CLASSES,
    SHAPE_DRAWERS,
    SPLIT_IDS,
    SUPERSAMPLE,
    Place,
    add_noise,
    contrasting_colour,
    random_colour,
)

DETECTION_CLASSES = ("circle", "ring", "triangle", "square", "star", "plus")  # distinct under any rotation
MAX_OBJECTS = 10
ANNOTATION_FILE = "_annotations.coco.json"  # the common COCO export layout: images beside this file
_DRAWERS = tuple(SHAPE_DRAWERS[SHAPE_CLASSES.index(name)] for name in DETECTION_CLASSES)
_DEFAULT_LENGTHS = {"train": 8000, "val": 500}
_LAYOUT_STREAM, _PIXEL_STREAM = 0, 1
_PLACEMENT_TRIES = 20  # an object that finds no place within the occlusion limit is left out
_COLOUR_TRIES = 20

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True)
class _Object:
    """A placed shape: label, the polygons that draw it (supersampled canvas pixels) and its box (image pixels)."""

    label: int
    polygons: tuple[tuple[np.ndarray, int], ...]  # (vertices (n, 2), fill): fill 0 cuts a hole
    box: Box


class SyntheticDetection(Dataset):
    """Images of 1 to `max_objects` shapes from 6 classes, overlapping a little, on cluttered noisy backgrounds.

    Item i is `(RGB PIL image of size x size, target)` with target `boxes` (float32 [N, 4], xyxy image pixels),
    `labels` (int64 [N], 0..5) and `image_id` (i + 1). Boxes are each shape's full extent. Difficulty knobs: object
    diameter as a fraction of the side, drawn log-uniformly in [min_scale, max_scale] (small ones are as common as
    large ones); `clutter`, the most lines and elongated blobs drawn behind the shapes; `occlusion`, the largest
    fraction of a shape's box that the boxes of shapes drawn on top of it may cover.
    """

    def __init__(self, split: str = "train", *, size: int = 160, length: int | None = None, seed: int = 0,
                 max_objects: int = 10, min_scale: float = 0.10, max_scale: float = 0.5, clutter: int = 6,
                 occlusion: float = 0.4) -> None:
        _check_arguments(split, size, max_objects, min_scale, max_scale, clutter, occlusion)
        self.split, self.size, self.seed = split, size, seed
        self.length = _DEFAULT_LENGTHS[split] if length is None else length
        self.max_objects, self.min_scale, self.max_scale = max_objects, min_scale, max_scale
        self.clutter, self.occlusion = clutter, occlusion
        self.classes = list(DETECTION_CLASSES)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Image.Image, dict[str, Any]]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        objects = self._layout(index)
        target = {
            "boxes": torch.tensor([o.box for o in objects], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([o.label for o in objects], dtype=torch.int64),
            "image_id": index + 1,
        }
        return self._render(index, objects), target

    def to_coco(self) -> dict[str, Any]:
        """The whole split's ground truth in COCO format (category id = label + 1), from the layouts alone."""
        images, annotations = [], []
        for index in range(self.length):
            images.append({"id": index + 1, "file_name": f"{self.split}_{index:06d}.png",
                           "width": self.size, "height": self.size})
            for obj in self._layout(index):
                x0, y0, x1, y1 = obj.box
                annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": obj.label + 1,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                    "iscrowd": 0})
        categories = [{"id": label + 1, "name": name} for label, name in enumerate(self.classes)]
        return {"images": images, "annotations": annotations, "categories": categories}

    def _stream(self, index: int, purpose: int) -> random.Random:
        state = np.random.SeedSequence((self.seed, SPLIT_IDS[self.split], index, purpose)).generate_state(1)
        return random.Random(state[0].item())

    def _layout(self, index: int) -> list[_Object]:
        """The shapes of image `index`, bottom first; each later one may cover earlier ones up to `occlusion`."""
        draws = self._stream(index, _LAYOUT_STREAM)
        objects: list[_Object] = []
        covered: list[float] = []  # fraction of each placed object's box covered by later boxes
        for _ in range(draws.randint(1, self.max_objects)):
            for _ in range(_PLACEMENT_TRIES):
                candidate = self._sample_object(draws)
                cover = [_intersection(o.box, candidate.box) / _area(o.box) for o in objects]
                if all(c + new <= self.occlusion for c, new in zip(covered, cover, strict=True)):
                    objects.append(candidate)
                    covered = [c + new for c, new in zip(covered, cover, strict=True)] + [0.0]
                    break
        return objects

    def _sample_object(self, draws: random.Random) -> _Object:
        """A random shape at a random size, rotation and position, wholly inside the image."""
        canvas_size = self.size * SUPERSAMPLE
        diameter = math.exp(draws.uniform(math.log(self.min_scale), math.log(self.max_scale)))
        radius = diameter * canvas_size / 2
        centre = (draws.uniform(radius, canvas_size - radius), draws.uniform(radius, canvas_size - radius))
        label = draws.randrange(len(_DRAWERS))
        recorder = _Recorder()
        _DRAWERS[label](recorder, draws, _placement(centre, radius, draws.uniform(0, 2 * math.pi),
                                                    draws.uniform(0.85, 1.0)))
        solid = np.concatenate([points for points, fill in recorder.polygons if fill])
        low, high = solid.min(axis=0) / SUPERSAMPLE, solid.max(axis=0) / SUPERSAMPLE
        box = tuple(np.float32(v).item() for v in (*low, *high))  # float32, as in the target tensors
        return _Object(label, tuple(recorder.polygons), box)

    def _render(self, index: int, objects: list[_Object]) -> Image.Image:
        """Background, clutter, the shapes bottom to top, downsampling, then Gaussian pixel noise."""
        draws = self._stream(index, _PIXEL_STREAM)
        canvas_size = self.size * SUPERSAMPLE
        background = random_colour(draws)
        canvas = Image.new("RGB", (canvas_size, canvas_size), background)
        _draw_clutter(ImageDraw.Draw(canvas), draws, canvas_size, self.clutter)
        colours: list[tuple[int, int, int]] = []
        for obj in objects:
            below = zip(objects[:len(colours)], colours, strict=True)
            beneath = [c for o, c in below if _intersection(o.box, obj.box) > 0]
            colours.append(_object_colour(draws, background, beneath))
            _paste(canvas, obj, colours[-1])
        return add_noise(draws, canvas.reduce(SUPERSAMPLE))


def _check_arguments(split: str, size: int, max_objects: int, min_scale: float, max_scale: float, clutter: int,
                     occlusion: float) -> None:
    if split not in _DEFAULT_LENGTHS:
        raise ValueError(f"split must be one of {sorted(_DEFAULT_LENGTHS)}, got {split!r}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if not 1 <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"max_objects must be between 1 and {MAX_OBJECTS}, got {max_objects}")
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got min_scale={min_scale}, max_scale={max_scale}")
    if clutter < 0:
        raise ValueError(f"clutter must be >= 0, got {clutter}")
    if not 0 <= occlusion <= 1:
        raise ValueError(f"occlusion is a fraction in [0, 1], got {occlusion}")


class _Recorder:
    """Stands in for ImageDraw: keeps the polygons a shape drawer fills, so a layout needs no pixels."""

    def __init__(self) -> None:
        self.polygons: list[tuple[np.ndarray, int]] = []

    def polygon(self, xy: list[float], fill: int) -> None:
        self.polygons.append((np.asarray(xy).reshape(-1, 2), fill))


def _placement(centre: tuple[float, float], radius: float, angle: float, squash: float) -> Place:
    """Map unit-disk points to canvas coordinates: squash, rotate, scale to `radius`, move to `centre`."""
    cos, sin = math.cos(angle) * radius, math.sin(angle) * radius
    matrix_t = np.array([[cos * squash, sin * squash], [-sin, cos]])
    return lambda points: points @ matrix_t + centre


def _area(box: Box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _intersection(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _object_colour(draws: random.Random, background: tuple[int, int, int],
                   beneath: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """A colour that stands out from the background and, where possible, from the shapes it overlaps."""
    for _ in range(_COLOUR_TRIES):
        colour = contrasting_colour(draws, background)
        if all(math.dist(colour, other) >= MIN_COLOUR_DISTANCE / 2 for other in beneath):
            break
    return colour


def _paste(canvas: Image.Image, obj: _Object, colour: tuple[int, int, int]) -> None:
    """Fill the object's polygons into a mask the size of its box, then paste its colour through the mask.

    Polygon vertices are continuous coordinates (pixel k spans [k, k + 1)); Pillow's are pixel centres, hence -0.5.
    """
    x0, y0 = (math.floor(v * SUPERSAMPLE) for v in obj.box[:2])
    x1, y1 = (math.ceil(v * SUPERSAMPLE) for v in obj.box[2:])
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(mask)
    for points, fill in obj.polygons:
        draw.polygon((points - (x0 + 0.5, y0 + 0.5)).ravel().tolist(), fill=fill)
    canvas.paste(colour, (x0, y0, x1, y1), mask)


def _draw_clutter(draw: ImageDraw.ImageDraw, draws: random.Random, canvas_size: int, most: int) -> None:
    """Up to `most` distractors behind the shapes: thin polylines and thin elongated blobs, in random colours."""
    for _ in range(draws.randint(0, most)):
        if draws.random() < 0.5:
            points = [(draws.uniform(0, canvas_size), draws.uniform(0, canvas_size))]
            for _ in range(draws.randint(1, 3)):
                length, angle = draws.uniform(0.1, 0.4) * canvas_size, draws.uniform(0, 2 * math.pi)
                points.append((points[-1][0] + length * math.cos(angle), points[-1][1] + length * math.sin(angle)))
            draw.line(points, fill=random_colour(draws), width=draws.randint(1, 2) * SUPERSAMPLE)
        else:
            radius = draws.uniform(0.03, 0.12) * canvas_size
            place = _placement((draws.uniform(0, canvas_size), draws.uniform(0, canvas_size)), radius,
                               draws.uniform(0, 2 * math.pi), draws.uniform(0.15, 0.35))
            draw.polygon(place(DISK).ravel().tolist(), fill=random_colour(draws))


def write_coco(dataset: SyntheticDetection, folder: str | Path) -> Path:
    """Write every image as PNG and the ground truth as `_annotations.coco.json` beside them; returns the JSON path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    coco = dataset.to_coco()
    for index, entry in enumerate(coco["images"]):
        dataset[index][0].save(folder / entry["file_name"])
    path = folder / ANNOTATION_FILE
    write_text(path, json.dumps(coco))
    return path
