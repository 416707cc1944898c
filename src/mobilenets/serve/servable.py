"""What the server runs: a model of any task behind one interface (an image in, a JSON-ready answer out),
on an exported runtime that takes whole batches: onnxruntime for `.onnx` and for training checkpoints (exported
with a dynamic batch when loaded), the ExecuTorch runtime for `.pte` (batch 1, so a batch runs image by image)."""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..deploy.formats import EXPORTED_SUFFIXES, load_exported
from ..deploy.runtime import ExportedNetwork
from ..extras import require
from ..tasks import checkpoint_task, get_task, task_of
from ..weights.convert import read_weights


class Servable(ABC):
    """A model as the server sees it: `prepare` (one image, off the event loop) and `answer` (one batch).

    `prepare` gives uint8 pixels and `answer` normalises the whole batch in one step: per image, the float
    conversion and normalisation cost more than the network itself for the smallest models."""

    task: str
    classes: list[str]

    def scale_for(self, width: int, height: int) -> float:
        """The factor `prepare` resizes an image of this size by: the decoder needs no more pixels than that
        (1 here: decode every pixel)."""
        return 1.0

    @abstractmethod
    def prepare(self, image: Image.Image, full_size: tuple[int, int]) -> tuple[torch.Tensor, Any]:
        """The network's input pixels for one image (uint8, C, H, W), decoded smaller than its `full_size` where
        `scale_for` allowed, and what `answer` needs to map its output back to the full size."""

    @abstractmethod
    def answer(self, images: torch.Tensor, contexts: list[Any]) -> list[dict[str, Any]]:
        """One JSON-ready answer per image of the batch (uint8, B, C, H, W)."""

    @property
    def fixed_batch(self) -> int | None:
        """The one batch size its network runs (a larger batch runs in pieces of it), or None for any."""
        network = getattr(self, "model", None)
        return network.exported.fixed_batch if isinstance(network, ExportedNetwork) else None

    def describe(self) -> dict[str, Any]:
        """What the web page and /health show about the model."""
        return {"task": self.task, "classes": self.classes}


def load_servable(path: str | Path, *, work: str | Path | None = None, **options: Any) -> Servable:
    """A model of any task from an exported file (`.onnx`, `.pte`) or a training checkpoint; a checkpoint is first
    exported to ONNX with a dynamic batch into `work` (default: a temporary folder), so that micro-batches run on
    onnxruntime. onnxruntime's threads sleep between runs, leaving the cores to the requests' decoding. `options`
    go to the task's servable, which takes those it knows (`top_k` for a classifier, `threshold` for a detector)."""
    path = Path(path)
    if path.suffix not in EXPORTED_SUFFIXES:
        path = _exported_checkpoint(path, Path(work or tempfile.mkdtemp(prefix="mobilenets-serve-")))
    exported = load_exported(path, spinning=False)
    task = get_task(task_of(exported.metadata.get("model"), exported.metadata))
    return task.servable(task.from_exported(exported), **options)


def _exported_checkpoint(checkpoint: Path, folder: Path) -> Path:
    """A training checkpoint exported to dynamic-batch ONNX in `folder`."""
    require("onnxruntime", "deploy", "serving a checkpoint (it runs on onnxruntime)")
    task = get_task(checkpoint_task(read_weights(checkpoint)))
    return task.export(checkpoint, folder / f"{task.noun}.onnx", format="onnx", dynamic_batch=True)
