"""A detector as `mobilenets serve` runs it: COCO-style boxes, classes and scores in the image's own pixels."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from ...data.folder import escaped_name
from ...data.transforms import normalise
from ...serve.servable import Servable
from .checkpoint import Detector
from .decode import SCORE_THRESHOLD, decode
from .transforms import boxes_to_original, letterbox


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
