"""Box-aware preprocessing for detection (torchvision transforms v2): letterbox for evaluation, random scale, crop,
flip and colour for training, and batching.

Both pipelines take `(PIL image, target)` with `boxes` xyxy in image pixels and give `(normalised float tensor
[3, size, size], target)` with `boxes` in network-input pixels. Training randomness comes from torch's global
generator only, so seeding it per sample (as `EpochSeeded` does) makes an augmentation reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ...data.transforms import IMAGENET_MEAN, normalise

Target = dict[str, Any]
DetectionTransform = Callable[[Image.Image, Target], tuple[torch.Tensor, Target]]
PAD_COLOUR = tuple(round(255 * m) for m in IMAGENET_MEAN)  # (124, 116, 104): padding normalises to 0
MIN_BOX_SIZE = 2.0  # pixels of network input; narrower boxes left by a crop are dropped with their labels
_COLOUR_JITTER = {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3}  # no hue, as the paper (hue costs time too)


@dataclass(frozen=True)
class LetterboxInfo:
    """How `letterbox` placed an image in the network input: input = original * scale + pad, per axis."""

    scale: tuple[float, float]  # (x, y): resized / original size; equal up to the rounding of the resized size
    pad: tuple[int, int]  # (left, top) offset of the image in the input: (0, 0), as padding goes right and bottom
    original_size: tuple[int, int]  # (width, height)


def letterbox(image: Image.Image | torch.Tensor, size: int,
              original_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, LetterboxInfo]:
    """Resize the longer side to `size` keeping the aspect ratio, pad right and bottom with PAD_COLOUR to a square.

    Returns the uint8 tensor [3, size, size] and what `boxes_to_input` / `boxes_to_original` need, relative to
    `original_size` (width, height) where `image` was decoded smaller than the original (a JPEG's draft mode).
    """
    width, height = F.get_size(image)[::-1]
    longer = max(width, height)
    resized = (max(1, round(width * size / longer)), max(1, round(height * size / longer)))
    original = original_size or (width, height)
    info = LetterboxInfo((resized[0] / original[0], resized[1] / original[1]), (0, 0), original)
    # Resized as a uint8 tensor by torch's antialiased kernel, as training's transforms resize, and faster than Pillow.
    pixels = F.resize(F.to_image(image), [resized[1], resized[0]], antialias=True)
    padded = F.pad(pixels, [0, 0, size - resized[0], size - resized[1]], fill=list(PAD_COLOUR))
    return padded.as_subclass(torch.Tensor), info


def boxes_to_input(boxes: torch.Tensor, info: LetterboxInfo) -> torch.Tensor:
    """xyxy boxes in original-image pixels -> network-input pixels."""
    scale = boxes.new_tensor(info.scale * 2)
    pad = boxes.new_tensor(info.pad * 2)
    return boxes * scale + pad


def boxes_to_original(boxes: torch.Tensor, info: LetterboxInfo) -> torch.Tensor:
    """xyxy boxes in network-input pixels (e.g. decoded predictions) -> original-image pixels, clipped to it."""
    scale = boxes.new_tensor(info.scale * 2)
    pad = boxes.new_tensor(info.pad * 2)
    limits = boxes.new_tensor(info.original_size * 2)
    return torch.minimum((boxes - pad) / scale, limits).clamp(min=0)


class _Eval:
    """Letterbox, normalise, and map the boxes; the target gains `letterbox` (a LetterboxInfo) for mapping back."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image | torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        pixels, info = letterbox(image, self.size)
        return normalise(pixels), {**target, "boxes": boxes_to_input(target["boxes"], info), "letterbox": info}


class _Train:
    """Random scale around the letterbox size, random crop or pad to a square, optional flip and colour jitter."""

    def __init__(self, size: int, *, flip: bool = True, scale: tuple[float, float] = (0.6, 1.3),
                 colour: bool = True) -> None:
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must satisfy 0 < low <= high, got {scale}")
        steps: list[Any] = [
            v2.ToImage(),
            v2.ScaleJitter((size, size), scale_range=scale, antialias=True),  # longer side: size * U(scale)
            v2.RandomCrop(size, pad_if_needed=True, fill=PAD_COLOUR),  # a random window, or a random place
        ]
        if flip:
            steps.append(v2.RandomHorizontalFlip())
        if colour:
            steps.append(v2.ColorJitter(**_COLOUR_JITTER))
        steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=MIN_BOX_SIZE)]
        self.steps = v2.Compose(steps)

    def __call__(self, image: Image.Image | torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        height, width = F.get_size(image)
        boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(height, width))
        pixels, out = self.steps(image, {**target, "boxes": boxes})
        return normalise(pixels), {**out, "boxes": out["boxes"].as_subclass(torch.Tensor)}


def train_transform(size: int, *, flip: bool = True, scale: tuple[float, float] = (0.6, 1.3),
                    colour: bool = True) -> DetectionTransform:
    """Training augmentation as in the CenterNet paper: random scale (0.6-1.3), crop, flip, colour jitter.

    The longer side is resized to size * U(scale), then a random size x size window is cut (or, where the image is
    smaller, it is placed at a random spot on PAD_COLOUR). Turn `flip` off for data that is not mirror-symmetric
    (text, digits, arrows). With scale (1, 1), flip and colour off, a square image gets exactly the letterbox.
    """
    return _Train(size, flip=flip, scale=scale, colour=colour)


def eval_transform(size: int) -> DetectionTransform:
    """The evaluation protocol: letterbox to size x size (see `letterbox`), normalise with ImageNet mean and std."""
    return _Eval(size)


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Stack the images into [B, 3, S, S]; the targets stay a list, as each image has its own number of boxes."""
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]
