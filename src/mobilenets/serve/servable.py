"""What the server runs: a classifier or a detector behind one interface (an image in, a JSON-ready answer out),
on an exported runtime that takes whole batches: onnxruntime for `.onnx` and for training checkpoints (exported
with a dynamic batch when loaded), the ExecuTorch runtime for `.pte` (batch 1, so a batch runs image by image)."""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..classification.checkpoint import Classifier, classifier_from_exported
from ..data.folder import escaped_name
from ..data.transforms import eval_resize_crop, normalise
from ..deploy.runtime import EXPORTED_SUFFIXES, ExportedNetwork, load_exported
from ..detection.checkpoint import Detector, detector_from_exported, load_detector
from ..detection.decode import SCORE_THRESHOLD, decode
from ..detection.transforms import boxes_to_original, letterbox
from ..extras import require
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


class ServedClassifier(Servable):
    """A classifier: the top-k classes and their probabilities."""

    task = "classification"

    def __init__(self, classifier: Classifier, top_k: int = 5) -> None:
        self.model, self.classes = classifier.model, [escaped_name(c) for c in classifier.classes]
        self.resize_crop, self.preprocess = eval_resize_crop(classifier.preprocess), classifier.preprocess
        self.top_k = min(top_k, len(self.classes))

    def scale_for(self, width: int, height: int) -> float:
        return self.preprocess.resize / min(width, height)

    def prepare(self, image: Image.Image, full_size: tuple[int, int]) -> tuple[torch.Tensor, None]:
        return self.resize_crop(image).as_subclass(torch.Tensor), None

    @torch.inference_mode()
    def answer(self, images: torch.Tensor, contexts: list[Any]) -> list[dict[str, Any]]:
        logits = self.model(normalise(images, self.preprocess.mean, self.preprocess.std))
        top = logits.float().softmax(dim=1).topk(self.top_k)
        return [{"predictions": [{"class": self.classes[i], "score": round(p, 6)} for i, p in
                                 zip(indices.tolist(), scores.tolist(), strict=True)]}
                for scores, indices in zip(top.values, top.indices, strict=True)]


class ServedDetector(Servable):
    """A CenterNet detector: COCO-style boxes [x, y, width, height] in the image's pixels, classes and scores."""

    task = "detection"

    def __init__(self, detector: Detector, threshold: float = SCORE_THRESHOLD) -> None:
        self.model, self.classes = detector.model, [escaped_name(c) for c in detector.classes]
        self.image_size = detector.image_size
        self.threshold = threshold

    def scale_for(self, width: int, height: int) -> float:
        return self.image_size / max(width, height)

    def prepare(self, image: Image.Image, full_size: tuple[int, int]) -> tuple[torch.Tensor, Any]:
        return letterbox(image, self.image_size, full_size)

    @torch.inference_mode()
    def answer(self, images: torch.Tensor, contexts: list[Any]) -> list[dict[str, Any]]:
        found = decode(*(o.float() for o in self.model(normalise(images))), threshold=self.threshold)
        answers = []
        for detections, placement in zip(found, contexts, strict=True):
            boxes = boxes_to_original(detections.boxes, placement)
            answers.append({"detections": [
                {"class": self.classes[label], "score": round(score, 6),
                 "bbox": [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)]}
                for (x0, y0, x1, y1), score, label in zip(boxes.tolist(), detections.scores.tolist(),
                                                          detections.labels.tolist(), strict=True)]})
        return answers


def load_servable(path: str | Path, *, work: str | Path | None = None, top_k: int = 5,
                  threshold: float = SCORE_THRESHOLD) -> Servable:
    """A classifier or detector from an exported file (`.onnx`, `.pte`) or a training checkpoint; a checkpoint is
    first exported to ONNX with a dynamic batch into `work` (default: a temporary folder), so that micro-batches
    run on onnxruntime. onnxruntime's threads sleep between runs, leaving the cores to the requests' decoding."""
    path = Path(path)
    if path.suffix not in EXPORTED_SUFFIXES:
        path = _exported_checkpoint(path, Path(work or tempfile.mkdtemp(prefix="mobilenets-serve-")))
    exported = load_exported(path, spinning=False)
    if "category_ids" in exported.metadata:
        return ServedDetector(detector_from_exported(exported), threshold)
    return ServedClassifier(classifier_from_exported(exported), top_k)


def _exported_checkpoint(checkpoint: Path, folder: Path) -> Path:
    """A training checkpoint exported to dynamic-batch ONNX in `folder`."""
    require("onnxruntime", "deploy", "serving a checkpoint (it runs on onnxruntime)")
    if (read_weights(checkpoint).config or {}).get("name") == "centernet":
        from ..detection.export import export_detector

        return export_detector(load_detector(checkpoint), folder / "detector.onnx", dynamic_batch=True)
    from ..classification.export import export_classifier

    return export_classifier(checkpoint, "onnx", folder / "classifier.onnx", dynamic_batch=True).path
