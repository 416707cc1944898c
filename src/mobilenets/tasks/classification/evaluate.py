"""`mobilenets.evaluate`: a trained classifier's accuracy, per-class precision/recall and confusion matrix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ...data.folder import DataError, ImageFiles, resolve_image_folder, scan_image_folder
from ...data.synthetic import SyntheticShapes
from ...data.transforms import eval_transform
from ...data.wrappers import ImageOnly, Transformed
from ...engine.distributed import choose_device
from ...engine.loop import autocast, images_to
from ...plots import plot_confusion
from ...progress import progress_bar
from .checkpoint import Classifier, load_classifier, recorded_training


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
    for x, y in progress_bar(loader, description, enabled=progress):
        x, y = images_to(x, device, channels_last), y.to(device)
        with autocast(device, amp):
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


def evaluation_set(classifier: Classifier, data: str | Path | None) -> tuple[Any, str]:
    """The images to evaluate on: a folder's `val/` (or the whole folder), else the run's own validation split."""
    if data is None:
        if "train_config" not in classifier.meta:
            raise DataError("the model does not record the data it was trained on: give the images to evaluate "
                            "on (--data DIR)")
        run = recorded_training(classifier)
        if run.data is None:
            shapes = SyntheticShapes("val", size=run.image_size, length=run.synthetic_val_size, seed=run.seed)
            return shapes, "built-in synthetic shapes, validation split"
        split = resolve_image_folder(run.data, run.val_split, run.seed)
        folder_classes, samples, where = split.classes, split.val, f"{run.data} (validation split of the run)"
    else:
        root = Path(data)
        target = root / "val" if (root / "val").is_dir() else root
        samples, folder_classes, skipped = scan_image_folder(target)
        where = f"{target}{f' ({len(skipped)} unreadable files skipped)' if skipped else ''}"
    if unknown := [c for c in folder_classes if c not in classifier.classes]:
        raise DataError(f"{where}: class {unknown[0]!r} is not one the model knows ({', '.join(classifier.classes)})")
    index = {name: i for i, name in enumerate(classifier.classes)}
    samples = [(path, index[folder_classes[label]]) for path, label in samples]
    return ImageFiles(samples, classifier.classes), where


def evaluate(checkpoint: str | Path, data: str | Path | None = None, *, batch_size: int = 128, workers: int = 2,
             device: str = "auto", confusion_png: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Top-1, top-5, loss, per-class precision/recall/support and the confusion matrix of a checkpoint.

    Without `data`, the run's own validation split is used (built-in shapes or its folder); with a folder, its
    `val/` subfolder if it has one, else every image in it. `confusion_png` also draws the matrix.
    """
    classifier = load_classifier(checkpoint)
    dataset, where = evaluation_set(classifier, data)
    torch_device = choose_device(device)
    loader = DataLoader(Transformed(dataset, ImageOnly(eval_transform(classifier.preprocess))), batch_size=batch_size,
                        num_workers=workers)
    result = evaluate_loader(classifier.model.to(torch_device), loader, torch_device, len(classifier.classes),
                             progress=progress)
    confusion = result.confusion
    predicted, actual = confusion.sum(dim=0), confusion.sum(dim=1)
    per_class = {
        name: {"precision": (confusion[i, i] / predicted[i]).item() if predicted[i] else 0.0,
               "recall": (confusion[i, i] / actual[i]).item() if actual[i] else 0.0,
               "support": int(actual[i])}
        for i, name in enumerate(classifier.classes)}
    if confusion_png is not None:
        plot_confusion(confusion, classifier.classes, confusion_png)
    return {"top1": result.top1, "top5": result.top5, "loss": result.loss, "images": result.images,
            "data": where, "per_class": per_class, "confusion": confusion.tolist()}
