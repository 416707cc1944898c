"""One training epoch over a loader: forward, loss, backward, clipping, optimizer and scheduler steps, with AMP on
CUDA and a stop on a non-finite loss. Task-neutral: the model and the loss decide what a batch means."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..progress import progress_bar


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops without writing a checkpoint."""


@dataclass
class EpochStats:
    loss: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA when `amp`; elsewhere nothing (CPU runs stay in float32)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def images_to(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A batch of images on `device`, in channels-last memory order if asked."""
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler,
                    criterion: Callable[[Any, Any], torch.Tensor], device: torch.device, *,
                    epoch: int, amp: bool = False, channels_last: bool = True, clip_grad: float | None = None,
                    scaler: torch.amp.GradScaler | None = None, after_step: Callable[[], None] | None = None,
                    progress: bool = True, description: str = "train", keep_eval: nn.Module | None = None,
                    all_true: Callable[[bool], bool] = bool) -> EpochStats:
    """Train over `loader` of (images, targets) once, stepping the scheduler per batch; stops on a NaN/infinite
    loss. Targets that are tensors go to the device; others (e.g. lists of boxes) are the criterion's to place.

    `keep_eval`: a part of the model (a frozen backbone) whose batch norms keep their running statistics.
    `all_true`: whether a condition holds on every process (data-parallel: all stop together on a bad loss).
    """
    model.train()
    if keep_eval is not None:
        keep_eval.eval()
    total_loss, images, start = 0.0, 0, time.perf_counter()
    bar = progress_bar(loader, description, enabled=progress)
    for step, (x, y) in enumerate(bar):
        x = images_to(x, device, channels_last)
        y = y.to(device, non_blocking=True) if isinstance(y, torch.Tensor) else y
        with autocast(device, amp):
            loss = criterion(model(x), y)
        if not all_true(math.isfinite(loss.item())):
            raise NonFiniteLossError(f"epoch {epoch + 1}, step {step + 1}: the loss is {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if clip_grad is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step()
        total_loss += loss.item() * len(x)
        images += len(x)
        # refresh=False: redrawing here would show tqdm's lazily updated count (0/N) on every batch
        bar.set_postfix(loss=f"{total_loss / images:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                        refresh=False)
    return EpochStats(total_loss / max(images, 1), images, time.perf_counter() - start)
