"""Figures people would rather look at than tables: training curves and confusion matrices (matplotlib extra)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from ._atomic import atomic_path
from .data.folder import escaped_name

log = logging.getLogger(__name__)


def pyplot():
    """matplotlib's pyplot on a file-only backend, or None (with one log line) when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed (pip install 'mobilenets[plot]'): no PNG figures")
        return None
    return plt


def save_figure(fig, path: Path) -> None:
    """Write a figure as PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def plot_curves(history: Sequence[dict], path: str | Path, *, scores: Sequence[str] = ("top1", "top5"),
                score_label: str = "validation accuracy") -> bool:
    """Loss (train, val) and validation scores (e.g. top-1 and top-5, or AP50 and AP) against epoch, side by
    side; False without matplotlib."""
    plt = pyplot()
    if plt is None or not history:
        return False
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    loss_ax.plot(epochs, [r["val_loss"] for r in history], marker="o", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    for score in scores:
        acc_ax.plot(epochs, [r[score] for r in history], marker="o", label=score)
    acc_ax.set(xlabel="epoch", ylabel=score_label, title=score_label.capitalize(), ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, Path(path))
    plt.close(fig)
    return True


def plot_confusion(confusion: torch.Tensor, classes: Sequence[str], path: str | Path) -> bool:
    """Row-normalised confusion matrix (true class down, predicted across) with counts; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    counts = confusion.double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * n + 2), max(4, 0.6 * n + 1)))
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title="Confusion (row-normalised)")
    names = [escaped_name(name) for name in classes]
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if counts[i, j] > 0:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    save_figure(fig, Path(path))
    plt.close(fig)
    return True
