"""A classifier as `mobilenets serve` runs it: the top-k classes and their probabilities."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from ...data.folder import escaped_name
from ...data.transforms import eval_resize_crop, normalise
from ...serve.servable import Servable
from .checkpoint import Classifier


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
