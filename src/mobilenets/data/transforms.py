"""Preprocessing and augmentation pipelines (torchvision transforms v2) for training and evaluation.

`Preprocess` is what a trained model needs at inference and is stored in every checkpoint; `Augment` is training
only. Augmentation defaults are mild: ImageNet's crop scale (0.08, 1) and flips destroy small data sets.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torchvision.transforms import InterpolationMode, v2

from ..recipes import MAX_RESOLUTION

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_RESIZE = 2 * MAX_RESOLUTION  # the shorter side before the crop: room for a small crop of a large input
AUTO_AUGMENT_POLICIES = ("autoaugment", "randaugment")
INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic")  # the modes torchvision supports on tensors


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing: resize the shorter side to `resize`, centre-crop `image_size`, normalise."""

    image_size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        try:  # JSON gives lists
            mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        except (TypeError, ValueError):
            mean = std = ()
        if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
            raise ValueError(f"mean and std need 3 finite numbers each, std positive; got mean={self.mean!r}, "
                             f"std={self.std!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if not 1 <= self.image_size <= self.resize <= MAX_RESIZE:
            raise ValueError(f"need 1 <= image_size <= resize <= {MAX_RESIZE}, got "
                             f"image_size={self.image_size}, resize={self.resize}")
        _interpolation_mode(self.interpolation)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists), as stored in checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def at(self, image_size: int) -> Preprocess:
        """The same preprocessing for another input size: the crop's share of the resized image, the mean and std
        and the interpolation kept."""
        return replace(self, image_size=image_size, resize=round(image_size * self.resize / self.image_size))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocess:
        """The inverse of `to_dict`; ValueError on anything else (not a dict, unknown or missing keys, bad
        values)."""
        if not isinstance(values, dict):
            raise ValueError(f"preprocessing must be a JSON object, got {type(values).__name__}")
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown preprocessing keys: {', '.join(sorted(unknown))}")
        try:
            return cls(**values)
        except TypeError as e:  # a missing key, or a value of the wrong type ("big" for image_size)
            raise ValueError(f"invalid preprocessing {values}: {e}") from None


def default_preprocess(image_size: int) -> Preprocess:
    """ImageNet-style evaluation: resize to image_size / 0.875, centre crop, ImageNet mean and std."""
    return Preprocess(image_size, round(image_size / 0.875), IMAGENET_MEAN, IMAGENET_STD)


def eval_transform(p: Preprocess) -> v2.Compose:
    """PIL image or uint8 tensor -> normalised float tensor (3, image_size, image_size)."""
    return v2.Compose([eval_resize_crop(p), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(p.mean),
                                                                                                list(p.std))])


def eval_resize_crop(p: Preprocess) -> v2.Compose:
    """The geometry of `eval_transform` alone: PIL image or uint8 tensor -> uint8 tensor (3, image_size,
    image_size), for callers that normalise a whole batch at once (`normalise`)."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(p.resize, interpolation=_interpolation_mode(p.interpolation), antialias=True),
        v2.CenterCrop(p.image_size),
    ])


def normalise(images: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN,
              std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """uint8 [..., 3, H, W] (one image or a batch, plain or tv_tensors) -> float32 scaled to [0, 1], minus `mean`,
    over `std`, as a plain tensor: the last steps of `eval_transform`, computed as one multiply-add per channel
    over the converted pixels."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalise takes uint8 pixels, got {images.dtype}")
    scale, shift = _scale_and_shift(tuple(mean), tuple(std))
    return images.as_subclass(torch.Tensor).to(torch.float32).mul_(scale).add_(shift)


@functools.lru_cache(maxsize=8)
def _scale_and_shift(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / 255 - mean) / std as x * scale + shift, per channel, shaped to broadcast over [..., C, H, W]."""
    mean_, std_ = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    return ((1 / (255 * std_)).float().view(-1, 1, 1), (-mean_ / std_).float().view(-1, 1, 1))


@dataclass(frozen=True)
class Augment:
    """Training augmentation. Mild by default: crop area 35-100%, no flips (digits, text and arrows are not
    mirror-symmetric), no colour or policy augmentation."""

    crop_scale: tuple[float, float] = (0.35, 1.0)  # random-resized-crop area range; ImageNet recipes use (0.08, 1)
    hflip: bool = False
    color_jitter: float = 0.0  # brightness, contrast and saturation strength; hue gets min(0.1, x / 4)
    auto_augment: str | None = None  # "autoaugment" (ImageNet policy), "randaugment" or None
    random_erasing: float = 0.0  # probability of erasing a random rectangle

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_scale", tuple(float(s) for s in self.crop_scale))
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if self.color_jitter < 0:
            raise ValueError(f"color_jitter must be >= 0, got {self.color_jitter}")
        if self.auto_augment not in (None, *AUTO_AUGMENT_POLICIES):
            raise ValueError(f"auto_augment must be one of {', '.join(AUTO_AUGMENT_POLICIES)} or None, "
                             f"got {self.auto_augment!r}")
        if not 0 <= self.random_erasing <= 1:
            raise ValueError(f"random_erasing is a probability in [0, 1], got {self.random_erasing}")


def train_transform(p: Preprocess, a: Augment) -> v2.Compose:
    """Random-resized crop to image_size, then the augmentations `a` enables, then normalisation."""
    interpolation = _interpolation_mode(p.interpolation)
    steps: list[Any] = [
        v2.ToImage(),
        v2.RandomResizedCrop(p.image_size, scale=a.crop_scale, interpolation=interpolation, antialias=True),
    ]
    if a.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if a.color_jitter > 0:
        x = a.color_jitter
        steps.append(v2.ColorJitter(brightness=x, contrast=x, saturation=x, hue=min(0.1, x / 4)))
    if a.auto_augment == "autoaugment":
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=interpolation))
    elif a.auto_augment == "randaugment":
        steps.append(v2.RandAugment(interpolation=interpolation))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(p.mean), list(p.std))]
    if a.random_erasing > 0:
        steps.append(v2.RandomErasing(p=a.random_erasing))
    return v2.Compose(steps)


def _interpolation_mode(name: str) -> InterpolationMode:
    if name not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {name!r}; expected one of {', '.join(INTERPOLATIONS)}")
    return InterpolationMode(name)
