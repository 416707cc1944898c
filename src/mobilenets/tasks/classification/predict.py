"""`mobilenets.predict`: class names and probabilities for image files, one result or one error per image."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...data.folder import DataError, expand_inputs, load_rgb
from ...data.transforms import eval_transform
from ...engine.distributed import choose_device
from .checkpoint import load_classifier


@dataclass
class Prediction:
    """The top-k classes of one image with their probabilities, or the one-line reason it could not be read."""

    path: str
    classes: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "predictions": [{"class": c, "probability": p}
                                                   for c, p in zip(self.classes, self.probabilities, strict=True)]}


@torch.no_grad()
def predict(checkpoint: str | Path, inputs: Iterable[str | Path], *, topk: int = 5, batch_size: int = 32,
            device: str = "auto") -> list[Prediction]:
    """Predict every image in `inputs` (files or folders); unreadable images get an error, the rest a result."""
    classifier = load_classifier(checkpoint)
    torch_device = choose_device(device)
    model = classifier.model.to(torch_device)
    transform = eval_transform(classifier.preprocess)
    k = min(topk, len(classifier.classes))
    results: list[Prediction] = []
    batch: list[tuple[Prediction, torch.Tensor]] = []

    def flush() -> None:
        if batch:
            probabilities = model(torch.stack([x for _, x in batch]).to(torch_device)).softmax(dim=1).cpu()
            for (prediction, _), row in zip(batch, probabilities, strict=True):
                top = row.topk(k)
                prediction.classes = [classifier.classes[i] for i in top.indices.tolist()]
                prediction.probabilities = top.values.tolist()
            batch.clear()

    for path in expand_inputs(inputs):
        prediction = Prediction(str(path))
        results.append(prediction)
        try:
            batch.append((prediction, transform(load_rgb(path))))
        except DataError as e:  # one unreadable image must not stop the others
            prediction.error = str(e)
        if len(batch) == batch_size:
            flush()
    flush()
    return results
