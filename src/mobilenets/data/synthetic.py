"""SyntheticShapes: a built-in, procedurally generated 10-class image set for training without downloads.

Every image is drawn on the fly from its own random stream `(seed, split, index)`, so the pixels do not depend on
worker count or access order. Background, clutter, position, scale, rotation, colours and noise all vary, so a
linear model on pixels does poorly while a small CNN can learn the shapes.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

SHAPE_CLASSES = (
    "circle", "ring", "triangle", "square", "star", "plus", "crescent", "stripes", "checkerboard", "dots",
)
SPLIT_IDS = {"train": 0, "val": 1}
_DEFAULT_LENGTHS = {"train": 10_000, "val": 2_000}
SUPERSAMPLE = 2  # draw at 2x and box-downsample: cheap antialiasing
MIN_COLOUR_DISTANCE = 160  # Euclidean RGB distance between object and background (the maximum is 441)
_MIN_LUMA_DIFFERENCE = 60  # brightness contrast: shapes must show in luminance, not only in hue
_MAX_NOISE_SIGMA = 0.05 * 255


class SyntheticShapes(Dataset):
    """Images of 10 rotation-distinct shapes and patterns on cluttered, noisy, randomly coloured backgrounds.

    Item i is `(RGB PIL image of size x size, i % 10)`; its pixels depend only on (seed, split, i).
    """

    def __init__(self, split: str = "train", *, size: int = 64, length: int | None = None, seed: int = 0) -> None:
        if split not in SPLIT_IDS:
            raise ValueError(f"split must be one of {sorted(SPLIT_IDS)}, got {split!r}")
        if size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {size}")
        self.split = split
        self.size = size
        self.length = _DEFAULT_LENGTHS[split] if length is None else length
        self.seed = seed
        self.classes = list(SHAPE_CLASSES)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        label = index % len(SHAPE_CLASSES)
        stream = np.random.SeedSequence((self.seed, SPLIT_IDS[self.split], index))  # default_rng's seeding
        draws = random.Random(stream.generate_state(1, np.uint64)[0].item())
        return _draw_image(draws, label, self.size), label


def _draw_image(draws: random.Random, label: int, size: int) -> Image.Image:
    """Background, clutter, the placed object, then Gaussian pixel noise.

    Scalars come from `random.Random`, not numpy: numpy's per-call overhead would double the cost of an image.
    """
    canvas_size = size * SUPERSAMPLE
    background = random_colour(draws)
    canvas = Image.new("RGB", (canvas_size, canvas_size), background)
    radius = draws.uniform(0.2, 0.40) * canvas_size  # object diameter: 40-80% of the side
    _draw_clutter(ImageDraw.Draw(canvas), draws, canvas_size, radius)
    mask = Image.new("L", (canvas_size, canvas_size), 0)
    SHAPE_DRAWERS[label](ImageDraw.Draw(mask), draws, _placement(draws, canvas_size, radius))
    image = canvas.reduce(SUPERSAMPLE)
    image.paste(contrasting_colour(draws, background), mask=mask.reduce(SUPERSAMPLE))
    return add_noise(draws, image)


def random_colour(draws: random.Random) -> tuple[int, int, int]:
    return draws.randrange(256), draws.randrange(256), draws.randrange(256)


def _luma(colour: tuple[int, int, int]) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def contrasting_colour(draws: random.Random, background: tuple[int, int, int]) -> tuple[int, int, int]:
    """A random colour far enough from the background, in colour and in brightness, to stay visible under noise."""
    while True:
        colour = random_colour(draws)
        if (math.dist(colour, background) >= MIN_COLOUR_DISTANCE
                and abs(_luma(colour) - _luma(background)) >= _MIN_LUMA_DIFFERENCE):
            return colour


def _draw_clutter(draw: ImageDraw.ImageDraw, draws: random.Random, canvas_size: int, radius: float) -> None:
    """0-2 thin lines and 0-2 small blobs in random colours, each smaller than the object."""
    for _ in range(draws.randrange(0, 3)):
        x, y = draws.uniform(0, canvas_size), draws.uniform(0, canvas_size)
        length, angle = draws.uniform(0.4, 1.2) * radius, draws.uniform(0, 2 * math.pi)
        end = (x + length * math.cos(angle), y + length * math.sin(angle))
        draw.line([(x, y), end], fill=random_colour(draws), width=SUPERSAMPLE)
    for _ in range(draws.randrange(0, 3)):
        x, y = draws.uniform(0, canvas_size), draws.uniform(0, canvas_size)
        rx, ry = draws.uniform(0.08, 0.22) * radius, draws.uniform(0.08, 0.22) * radius
        draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=random_colour(draws))


Place = Callable[[np.ndarray], np.ndarray]


def _placement(draws: random.Random, canvas_size: int, radius: float) -> Place:
    """Map unit-disk points to the canvas: slight squash, random rotation, scale to `radius`, random centre."""
    margin = 0.8 * radius  # the object's bounding circle stays mostly inside
    centre = np.array([draws.uniform(margin, canvas_size - margin), draws.uniform(margin, canvas_size - margin)])
    angle, squash = draws.uniform(0, 2 * math.pi), draws.uniform(0.85, 1.0)
    cos, sin = math.cos(angle) * radius, math.sin(angle) * radius
    matrix_t = np.array([[cos * squash, sin * squash], [-sin, cos]])
    return lambda points: points @ matrix_t + centre


def _fill(draw: ImageDraw.ImageDraw, polygons: np.ndarray, value: int = 255) -> None:
    """Fill each polygon of a (vertices, 2) or (polygons, vertices, 2) array of canvas points."""
    for polygon in polygons.reshape(-1, polygons.shape[-2] * 2).tolist():
        draw.polygon(polygon, fill=value)


def _regular(n: int, radius: float = 1.0, start: float = 0.0) -> np.ndarray:
    angles = start + np.linspace(0, 2 * math.pi, n, endpoint=False)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _band_rectangles(n: int) -> np.ndarray:
    """Corners of every other band of n (odd) vertical bands over the patch [-0.75, 0.75]^2, as (bands, 4, 2)."""
    e = np.linspace(-0.75, 0.75, n + 1)
    return np.array([[(e[i], -0.75), (e[i + 1], -0.75), (e[i + 1], 0.75), (e[i], 0.75)] for i in range(0, n, 2)])


def _grid_cells(n: int) -> np.ndarray:
    """Corners of the dark cells of an n x n checkerboard over the patch [-0.75, 0.75]^2, as (cells, 4, 2)."""
    e = np.linspace(-0.75, 0.75, n + 1)
    return np.array([[(e[i], e[j]), (e[i + 1], e[j]), (e[i + 1], e[j + 1]), (e[i], e[j + 1])]
                     for i in range(n) for j in range(n) if (i + j) % 2 == 0])


DISK = _regular(48)
_DOT = _regular(16)
_SQUARE = _regular(4, 0.95, math.pi / 4)
_STAR_POINTS = np.arange(10) % 2 == 0
_STRIPES = {n: _band_rectangles(n) for n in (5, 7)}
_CHECKERBOARDS = {n: _grid_cells(n) for n in (3, 4)}
_DOT_SITES = np.vstack([[(0.0, 0.0)], _regular(6, 0.65)])


def _draw_circle(draw: ImageDraw.ImageDraw, draws: random.Random, place: Place) -> None:
    _fill(draw, place(DISK))


def _draw_ring(draw: ImageDraw.ImageDraw, draws: random.Random, place: Place) -> None:
    _fill(draw, place(DISK))
    _fill(draw, place(DISK * draws.uniform(0.5, 0.72)), 0)


def _draw_triangle(draw: ImageDraw.ImageDraw, draws: random.Random, place: Place) -> None:
    angles = [k * 2 * math.pi / 3 + draws.uniform(-0.17, 0.17) for k in range(3)]
    _fill(draw, place(np.array([(math.cos(a), math.sin(a)) for a in angles])))


def _draw_square(draw: ImageDraw.ImageDraw, draws: random.Random, place: Place) -> None:
    _fill(draw, place(_SQUARE))


def _draw_star(draw: ImageDraw.ImageDraw, draws: random.Random, place: Place) -> None:
    radii = np.where(_STAR_POINTS, 1.0, draws.uniform(0.38, 0.5))
    _fill(draw, place(_regular(10) * radii[:, None]))


def _draw_plus(draw: ImageDraw.ImageDraw, draws: random.Random, place: Place) -> None:
    w = draws.uniform(0.2, 0.3)  # arm half-width
    outline = [(1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1), (w, -1),
               (w, -w)]
    _fill(draw, place(0.95 * np.array(outline)))


def _draw_crescent(draw: ImageDraw.ImageDraw, draws: random.Random, place: Place) -> None:
    _fill(draw, place(DISK))
    _fill(draw, place(DISK * draws.uniform(0.75, 0.9) + (draws.uniform(0.35, 0.55), 0.0)), 0)


def _draw_stripes(draw: ImageDraw.ImageDraw, draws: random.Random, place: Place) -> None:
    """3 or 4 filled bands with equal gaps between them, over a square patch."""
    _fill(draw, place(_STRIPES[draws.choice((5, 7))]))


def _draw_checkerboard(draw: ImageDraw.ImageDraw, draws: random.Random, place: Place) -> None:
    _fill(draw, place(_CHECKERBOARDS[draws.choice((3, 4))]))


def _draw_dots(draw: ImageDraw.ImageDraw, draws: random.Random, place: Place) -> None:
    """5-7 equal dots on a jittered hexagonal cluster."""
    sites = _DOT_SITES[draws.sample(range(len(_DOT_SITES)), draws.randrange(5, 8))]
    jitter = np.array([(draws.uniform(-0.07, 0.07), draws.uniform(-0.07, 0.07)) for _ in sites])
    _fill(draw, place(_DOT * draws.uniform(0.15, 0.2) + (sites + jitter)[:, None, :]))


SHAPE_DRAWERS = (
    _draw_circle, _draw_ring, _draw_triangle, _draw_square, _draw_star, _draw_plus, _draw_crescent, _draw_stripes,
    _draw_checkerboard, _draw_dots,
)


@functools.cache
def _gaussian_table(log2_length: int) -> np.ndarray:
    """A fixed block of standard-normal samples: slicing it is 10x cheaper than drawing 12k normals per image."""
    return np.random.default_rng(0).standard_normal(1 << log2_length, dtype=np.float32)


def add_noise(draws: random.Random, image: Image.Image) -> Image.Image:
    """Gaussian pixel noise with a random sigma: a window of the fixed table at a random offset."""
    pixels = np.asarray(image, dtype=np.float32)
    table = _gaussian_table(max(20, (2 * pixels.size).bit_length()))
    offset = draws.randrange(len(table) - pixels.size)
    noise = table[offset:offset + pixels.size].reshape(pixels.shape)
    noisy = np.clip(pixels + noise * draws.uniform(0, _MAX_NOISE_SIGMA) + 0.5, 0, 255)
    return Image.fromarray(noisy.astype(np.uint8), "RGB")
