"""The datasets a classification run trains and validates on: the built-in shapes or an image folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..data.folder import ImageFiles, resolve_image_folder
from ..data.synthetic import SHAPE_CLASSES, SyntheticShapes
from ..data.transforms import Augment, Preprocess, default_preprocess, eval_transform, train_transform
from .config import TrainConfig


class ImageOnly:
    """Turns an image transform into an (image, label) -> (transformed image, label) transform."""

    def __init__(self, transform: Callable[[Any], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, image: Any, label: int) -> tuple[torch.Tensor, int]:
        return self.transform(image), label


class EpochSeeded(Dataset):
    """Applies a random transform to each (image, target) item with a seed fixed by (run seed, epoch, index).

    Each sample's augmentation is then the same whatever the worker count or process, so a resumed run, a
    run with more workers and an uninterrupted run see identical images. `transform(image, target)` returns the
    transformed pair (wrap an image-only transform in `ImageOnly`).
    """

    def __init__(self, base: Dataset, transform: Callable[[Any, Any], tuple[Any, Any]], seed: int) -> None:
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        item = self.base[index]
        # the CPU generator only: torch.manual_seed also reseeds every accelerator, 100x slower per call
        torch.default_generator.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        return self.transform(*item)


class Transformed(Dataset):
    """A dataset of (image, target) items with a deterministic `transform(image, target)` applied to each."""

    def __init__(self, base: Dataset, transform: Callable[[Any, Any], tuple[Any, Any]]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.transform(*self.base[index])


class InMemoryImages(Dataset):
    """A dataset's images held as one uint8 tensor, made once: the built-in shapes are drawn once per run rather
    than once per epoch, and workers share the tensor instead of redrawing."""

    def __init__(self, base: Dataset, description: str, progress: bool = True) -> None:
        n = len(base)  # type: ignore[arg-type]
        first = torch.from_numpy(np.array(base[0][0]))
        self.images = torch.empty((n, *first.shape), dtype=torch.uint8)
        self.labels = torch.empty(n, dtype=torch.long)
        for i in tqdm(range(n), desc=description, disable=not progress, leave=False, unit="image"):
            image, label = base[i]
            self.images[i] = torch.from_numpy(np.array(image))
            self.labels[i] = label
        self.images = self.images.permute(0, 3, 1, 2)  # HWC -> CHW views, as torchvision expects

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


@dataclass
class ClassificationData:
    """Train and validation sets with their class names, preprocessing, and what was skipped while reading."""

    train: EpochSeeded
    val: Transformed
    classes: list[str]
    preprocess: Preprocess
    description: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def augment_of(config: TrainConfig) -> Augment:
    return Augment(crop_scale=config.crop_scale, hflip=config.hflip, color_jitter=config.color_jitter,
                   auto_augment=config.auto_augment, random_erasing=config.random_erasing)


def build_data(config: TrainConfig, progress: bool = True) -> ClassificationData:
    """The built-in synthetic shapes when `config.data` is None, else the image folder it names."""
    if config.data is None:
        train_base = InMemoryImages(SyntheticShapes("train", size=config.image_size,
                                                    length=config.synthetic_train_size, seed=config.seed),
                                    "drawing training shapes", progress)
        val_base = InMemoryImages(SyntheticShapes("val", size=config.image_size, length=config.synthetic_val_size,
                                                  seed=config.seed), "drawing validation shapes", progress)
        # the generated image is the whole scene: evaluate on all of it (no border crop)
        preprocess = dataclasses.replace(default_preprocess(config.image_size), resize=config.image_size)
        classes, skipped = list(SHAPE_CLASSES), []
        description = f"built-in synthetic shapes ({len(train_base)} train / {len(val_base)} val images)"
    else:
        split = resolve_image_folder(config.data, config.val_split, config.seed)
        classes, skipped = list(split.classes), list(split.skipped)
        train_base, val_base = ImageFiles(split.train, classes), ImageFiles(split.val, classes)
        preprocess = default_preprocess(config.image_size)
        description = (f"{config.data} ({split.layout}: {len(split.train)} train / {len(split.val)} val images, "
                       f"{len(classes)} classes, {len(skipped)} files skipped)")
    train = EpochSeeded(train_base, ImageOnly(train_transform(preprocess, augment_of(config))), config.seed)
    val = Transformed(val_base, ImageOnly(eval_transform(preprocess)))
    return ClassificationData(train, val, classes, preprocess, description, skipped)
