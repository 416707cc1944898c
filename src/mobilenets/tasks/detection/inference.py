"""A trained detector on data: COCO evaluation of a checkpoint, and predictions on image files (drawn and JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchvision.utils import draw_bounding_boxes

from ...data.folder import DataError, expand_inputs, load_rgb
from ...data.wrappers import Transformed
from ...engine.distributed import choose_device
from ...recipes import recorded_options
from .checkpoint import Detector, load_detector
from .config import DetectConfig
from .data import evaluation_sets
from .decode import SCORE_THRESHOLD, Detections, decode
from .evaluate import DetectionEval, evaluate_detector, to_coco_results
from .transforms import boxes_to_original, collate, eval_transform


def _evaluation_config(detector: Detector, data: str | None, val_json: str | None,
                       val_images: str | None) -> DetectConfig:
    """The run's own data options, or the folder / COCO files given (val only is enough)."""
    given: dict[str, Any] = {"image_size": detector.image_size, "overfit": 0, "pretrained": None, "resume": False}
    if data is not None or val_json is not None:
        given |= dict.fromkeys(("data", "train_json", "train_images", "val_json", "val_images"))
        if data is not None:
            given["data"] = data
        else:  # the evaluation needs only the validation files; the train pair is a formality of the config
            given |= {"train_json": val_json, "train_images": val_images, "val_json": val_json,
                      "val_images": val_images}
    return recorded_options(DetectConfig, detector.source, detector.meta.get("train_config", {}), **given)


def evaluate_checkpoint(checkpoint: str | Path, *, data: str | None = None, val_json: str | None = None,
                        val_images: str | None = None, batch_size: int = 32, workers: int = 0,
                        device: str = "auto", progress: bool = True) -> tuple[DetectionEval, str]:
    """COCO AP of a detector checkpoint on its run's validation split, a `--data` folder, or COCO val files;
    returns the evaluation (metrics, loss, COCO results in original-image pixels) and what was evaluated."""
    detector = load_detector(checkpoint)
    config = _evaluation_config(detector, data, val_json, val_images)
    _, val, classes, category_ids, truth, description = evaluation_sets(config)
    if classes != detector.classes:
        raise DataError(f"{description}: its classes ({', '.join(classes)}) are not the detector's "
                        f"({', '.join(detector.classes)})")
    loader = DataLoader(Transformed(val, eval_transform(detector.image_size)), batch_size=batch_size,
                        num_workers=workers, collate_fn=collate)
    torch_device = choose_device(device)
    result = evaluate_detector(detector.model.to(torch_device), loader, torch_device, truth, category_ids,
                               progress=progress)
    return result, f"{description}, validation split ({len(val)} images)"


@dataclass
class ImageDetections:
    """One image's detections in original-image pixels, or the one-line reason it could not be read."""

    path: str
    boxes: list[list[float]] = field(default_factory=list)  # xyxy
    scores: list[float] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    error: str | None = None


@torch.no_grad()
def predict_images(checkpoint: str | Path, inputs: list[str | Path], *, threshold: float = SCORE_THRESHOLD,
                   draw_to: str | Path | None = None, device: str = "auto") -> tuple[list[ImageDetections],
                                                                                      list[dict[str, Any]]]:
    """Detect objects in image files (or folders of them); returns per-image results and the same detections
    in COCO result format (`image_id` = position in the input list + 1, `file_name` added). With `draw_to`,
    each image is written there as PNG with its boxes, class names and scores drawn (`drawing_paths`: never over
    an input, one file per input)."""
    detector = load_detector(checkpoint)
    torch_device = choose_device(device)
    model = detector.model.to(torch_device)
    transform = eval_transform(detector.image_size)
    results, coco = [], []
    paths = expand_inputs(inputs)
    drawings = drawing_paths(paths, Path(draw_to)) if draw_to is not None else []
    for image_id, path in enumerate(paths, start=1):
        try:
            image = load_rgb(path)
        except DataError as e:  # one unreadable image must not stop the others
            results.append(ImageDetections(str(path), error=str(e)))
            continue
        x, target = transform(image, {"boxes": torch.zeros(0, 4)})
        found = decode(*(o.cpu() for o in model(x[None].to(torch_device))), threshold=threshold)[0]
        boxes = boxes_to_original(found.boxes, target["letterbox"])
        names = [detector.classes[i] for i in found.labels.tolist()]
        results.append(ImageDetections(str(path), boxes.tolist(), found.scores.tolist(), names))
        for record in to_coco_results([Detections(boxes, found.scores, found.labels)], [image_id],
                                      detector.category_ids):
            coco.append({**record, "file_name": str(path)})
        if drawings:
            _draw(image, boxes, names, found.scores.tolist(), drawings[image_id - 1])
    return results, coco


def drawing_paths(inputs: list[Path], folder: Path) -> list[Path]:
    """Where each input's drawing goes: `folder/<stem>.png`, or `<stem>_2.png`, `_3`, ... when that name is an
    input file or another input's drawing (two `x.png` from different folders, or drawing into the input folder)."""
    taken = {p.resolve() for p in inputs}
    paths = []
    for source in inputs:
        stem, n = source.stem, 1
        while (path := folder / (f"{stem}.png" if n == 1 else f"{stem}_{n}.png")).resolve() in taken:
            n += 1
        taken.add(path.resolve())
        paths.append(path)
    return paths


def _draw(image, boxes: torch.Tensor, names: list[str], scores: list[float], path: Path) -> None:
    from torchvision.transforms.v2 import functional as F

    from ..._atomic import atomic_path

    labels = [f"{name} {score:.2f}" for name, score in zip(names, scores, strict=True)]
    pixels = F.pil_to_tensor(image)
    # with nothing found the image is saved as it is (torchvision warns on an empty box list)
    drawn = draw_bounding_boxes(pixels, boxes, labels, colors="red", width=2) if len(boxes) else pixels
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        F.to_pil_image(drawn).save(tmp, format="PNG")
