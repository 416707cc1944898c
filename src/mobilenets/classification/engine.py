"""One training epoch and one evaluation pass: the loops that train, evaluate and the benchmark share."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

# a progress bar redraws 10x a second on a terminal, and writes a line every 30 s into a log file or CI output
REFRESH_SECONDS = 0.1 if sys.stderr.isatty() else 30.0


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


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _to(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, criterion: nn.Module, device: torch.device, *,
                    epoch: int, amp: bool = False, channels_last: bool = True, clip_grad: float | None = None,
                    scaler: torch.amp.GradScaler | None = None, after_step: Callable[[], None] | None = None,
                    progress: bool = True, description: str = "train",
                    keep_eval: nn.Module | None = None) -> EpochStats:
    """Train over `loader` once, stepping the scheduler per batch; stops on a NaN/infinite loss.

    `keep_eval`: a part of the model (a frozen backbone) whose batch norms keep their running statistics.
    """
    model.train()
    if keep_eval is not None:
        keep_eval.eval()
    total_loss, images, start = 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=description, disable=not progress, leave=False, unit="batch", dynamic_ncols=True,
               mininterval=REFRESH_SECONDS)
    for step, (x, y) in enumerate(bar):
        x = _to(x, device, channels_last)
        y = y.to(device, non_blocking=True) if isinstance(y, torch.Tensor) else y  # detection: a list of targets
        with _autocast(device, amp):
            loss = criterion(model(x), y)
            loss = loss["loss"] if isinstance(loss, dict) else loss
        if not math.isfinite(loss.item()):
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


@dataclass
class EvalResult:
    """Loss, top-1/top-5 accuracy and the confusion matrix (rows: true class, columns: predicted)."""

    loss: float
    top1: float
    top5: float
    confusion: torch.Tensor
    images: int


@torch.no_grad()
def evaluate_loader(model: nn.Module, loader: Iterable, device: torch.device, num_classes: int, *,
                    channels_last: bool = True, amp: bool = False, progress: bool = True,
                    description: str = "eval") -> EvalResult:
    """Evaluate `model` over `loader` in eval mode (BN running statistics, no dropout)."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    total_loss, correct1, correct5, images = 0.0, 0, 0, 0
    for x, y in tqdm(loader, desc=description, disable=not progress, leave=False, unit="batch",
                     mininterval=REFRESH_SECONDS):
        x, y = _to(x, device, channels_last), y.to(device)
        with _autocast(device, amp):
            logits = model(x).float()
        total_loss += criterion(logits, y).item()
        top = logits.topk(min(5, num_classes), dim=1).indices
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(dim=1).sum().item()
        confusion += torch.bincount(y.cpu() * num_classes + top[:, 0].cpu(),
                                    minlength=num_classes * num_classes).view(num_classes, num_classes)
        images += len(y)
    n = max(images, 1)
    return EvalResult(total_loss / n, correct1 / n, correct5 / n, confusion, images)
