"""Dataset wrappers every task trains with: per-sample augmentation seeded by (run seed, epoch, index), a fixed
transform over (image, target) pairs, and a dataset drawn once into memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import cpu
from ..progress import progress_bar


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
        # the CPU generator only: torch.manual_seed also reseeds every accelerator, far slower per call
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
        need = n * first.numel()
        if need > cpu.memory_bytes():  # refused before the allocator (which may overcommit) or the drawing
            raise MemoryError(f"{description}: {n:,} images of {first.shape[1]}x{first.shape[0]} px need "
                              f"{need / 2**30:.1f} GiB of memory, more than this machine has (ask for fewer images)")
        self.images = torch.empty((n, *first.shape), dtype=torch.uint8)
        self.labels = torch.empty(n, dtype=torch.long)
        for i in progress_bar(range(n), description, enabled=progress, unit="image"):
            image, label = base[i]
            self.images[i] = torch.from_numpy(np.array(image))
            self.labels[i] = label
        self.images = self.images.permute(0, 3, 1, 2)  # HWC -> CHW views, as torchvision expects

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])
