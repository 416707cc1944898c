"""Real detection data in COCO format: the annotation JSON, its images, and the two folder layouts people ship.

Every problem with the JSON is one DataError line naming the file; missing images are skipped and listed (as the
folder reader does), so one lost file does not stop a run, while a wrong folder (no image found) does.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..._words import counted
from ...data.folder import DataError, find_problems, load_rgb
from .synthetic import ANNOTATION_FILE

log = logging.getLogger(__name__)

_REQUIRED_KEYS = ("images", "annotations", "categories")
_IMAGE_FIELDS = ("id", "file_name", "width", "height")
_ANNOTATION_FIELDS = ("id", "image_id", "category_id", "bbox")
MAX_ID = 2**53 - 1  # the largest integer a JSON reader keeps exactly (in JavaScript, in float64 arrays)


class CocoDetection(Dataset):
    """Images listed in a COCO annotation file as `(RGB PIL image, target)`, targets as SyntheticDetection's.

    Target: `boxes` float32 [N, 4] xyxy in image pixels, clipped to the image, without crowd boxes or boxes left with
    no area; `labels` int64 [N], the categories in id order numbered 0..K-1; `image_id`, the COCO image id. Images
    without annotations are kept (they teach the model what is not an object). `coco` is the ground truth for the
    evaluator: the kept images and their annotations, boxes clipped the same way, crowd annotations kept (COCO
    evaluation ignores detections that match them). `dropped` lists the annotations left out because their box has
    no area inside the image (a negative or zero width or height, or wholly outside); they are counted in a warning.
    """

    def __init__(self, annotation_file: str | Path, image_dir: str | Path) -> None:
        self.annotation_file, self.image_dir = Path(annotation_file), Path(image_dir)
        raw = _read_json(self.annotation_file)
        categories = sorted(raw["categories"], key=lambda c: c["id"])
        self.classes: list[str] = [str(c["name"]) for c in categories]
        self.category_ids: list[int] = [c["id"] for c in categories]
        annotations, self.dropped = self._clipped_annotations(raw["annotations"], raw["images"])
        if self.dropped:
            shown = "; ".join(self.dropped[:3]) + ("; ..." if len(self.dropped) > 3 else "")
            log.warning("%s: %s left out, no area inside the image (%s)", self.annotation_file,
                        counted(len(self.dropped), "annotation"), shown)
        images, self.skipped = self._existing_images(raw["images"])
        kept_ids = {image["id"] for image in images}
        annotations = [a for a in annotations if a["image_id"] in kept_ids]
        self.coco: dict[str, Any] = {**raw, "images": images, "annotations": annotations, "categories": categories}
        self._images = images
        self._targets = _group_targets(images, annotations, {cid: k for k, cid in enumerate(self.category_ids)})

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> tuple[Image.Image, dict[str, Any]]:
        entry = self._images[index]
        path = self.image_dir / entry["file_name"]
        image = load_rgb(path)
        if image.size != (entry["width"], entry["height"]):
            raise DataError(f"{path}: image is {image.size[0]}x{image.size[1]} but {self.annotation_file} says "
                            f"{entry['width']}x{entry['height']}")
        boxes, labels = self._targets[index]
        return image, {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels), "image_id": entry["id"]}

    def _existing_images(self, images: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
        """The image entries whose file exists, decodes and is of the size they give, and (path, reason) for the
        others; DataError if none is left."""
        paths = [self.image_dir / entry["file_name"] for entry in images]
        sizes = {path: (entry["width"], entry["height"]) for entry, path in zip(images, paths, strict=True)}
        problems = find_problems(paths, sizes=sizes)  # a missing file is "no such file", as any other unusable one
        kept, skipped = [], []
        for entry, path in zip(images, paths, strict=True):
            if (problem := problems[path]) is None:
                kept.append(entry)
            else:
                skipped.append((path, problem))
        if not kept:
            example = f" (e.g. {skipped[0][0].name})" if skipped else ""
            raise DataError(f"{self.image_dir}: none of the {len(images)} images listed in {self.annotation_file} "
                            f"can be read{example}")
        return kept, skipped

    def _clipped_annotations(self, annotations: list[dict[str, Any]],
                             images: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Annotations with boxes clipped to their image, and the ones dropped for having no area left, described;
        unknown image or category ids are a DataError."""
        sizes = {e["id"]: (e["width"], e["height"]) for e in images}
        known_categories = set(self.category_ids)
        clipped, dropped = [], []
        for position, annotation in enumerate(annotations):
            _require_fields(self.annotation_file, "annotation", position, annotation, _ANNOTATION_FIELDS)
            where = f"{self.annotation_file}: annotation {annotation['id']}"
            if annotation["image_id"] not in sizes:
                raise DataError(f"{where} refers to image id {annotation['image_id']}, which is not in 'images'")
            if annotation["category_id"] not in known_categories:
                raise DataError(f"{where} refers to category id {annotation['category_id']}, which is not in "
                                f"'categories'")
            if annotation.get("iscrowd", 0) not in (0, 1):  # 0, 1, 0.0, 1.0, false, true
                raise DataError(f"{where}: iscrowd must be 0 or 1, got {annotation['iscrowd']!r}")
            bbox = _clip(annotation["bbox"], sizes[annotation["image_id"]], where)
            if bbox[2] > 0 and bbox[3] > 0:
                clipped.append({"area": bbox[2] * bbox[3], "iscrowd": 0, **annotation, "bbox": bbox})
            else:
                dropped.append(f"annotation {annotation['id']}: bbox {annotation['bbox']}")
        return clipped, dropped


def _read_json(path: Path) -> dict[str, Any]:
    """The parsed annotation file, its three lists present and their entries well formed; DataError otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with {', '.join(_REQUIRED_KEYS)}, got {type(data).__name__}")
    missing = [key for key in _REQUIRED_KEYS if not isinstance(data.get(key), list)]
    if missing:
        raise DataError(f"{path}: no {' / '.join(repr(k) for k in missing)} list (a COCO annotation file has "
                        f"{', '.join(_REQUIRED_KEYS)})")
    _check_entries(path, "category", data["categories"], ("id", "name"))
    if not data["categories"]:
        raise DataError(f"{path}: no categories (a detector needs at least one class)")
    names = [category["name"] for category in data["categories"]]
    if not all(isinstance(name, str) and name.strip() for name in names):
        bad = next(name for name in names if not (isinstance(name, str) and name.strip()))
        raise DataError(f"{path}: category name {bad!r} is not a name")
    _check_entries(path, "image", data["images"], _IMAGE_FIELDS)
    for image in data["images"]:
        if not isinstance(image["file_name"], str) or not image["file_name"]:
            raise DataError(f"{path}: image {image['id']}: file_name must be a file's name, got "
                            f"{image['file_name']!r}")
        name = Path(image["file_name"])
        if name.is_absolute() or ".." in name.parts:
            raise DataError(f"{path}: image {image['id']}: file_name {str(name)!r} points outside the image folder")
        if not all(isinstance(image[k], int) and not isinstance(image[k], bool) and image[k] > 0
                   for k in ("width", "height")):
            raise DataError(f"{path}: image {image['id']}: width and height must be positive integers, got "
                            f"{image['width']!r} x {image['height']!r}")
    return data


def _check_entries(path: Path, kind: str, entries: list[Any], fields: tuple[str, ...]) -> None:
    """Each entry is an object with `fields`, and no two share an id."""
    seen: set[Any] = set()
    for position, entry in enumerate(entries):
        _require_fields(path, kind, position, entry, fields)
        if not isinstance(entry["id"], int) or isinstance(entry["id"], bool) or not 0 <= entry["id"] <= MAX_ID:
            raise DataError(f"{path}: {kind} id {entry['id']!r} is not an integer from 0 to 2^53 - 1")
        if entry["id"] in seen:
            raise DataError(f"{path}: {kind} id {entry['id']} appears more than once")
        seen.add(entry["id"])


def _require_fields(path: Path, kind: str, position: int, entry: Any, fields: tuple[str, ...]) -> None:
    if not isinstance(entry, dict):
        raise DataError(f"{path}: {kind} #{position} is not a JSON object")
    missing = [name for name in fields if name not in entry]
    if missing:
        raise DataError(f"{path}: {kind} #{position} has no {', '.join(missing)}")


def _clip(bbox: Any, size: tuple[float, float], where: str) -> list[float]:
    """COCO [x, y, w, h] clipped to the image [0, width] x [0, height], still as [x, y, w, h]."""
    if not (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        raise DataError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
    width, height = size
    x0, y0 = min(max(bbox[0], 0), width), min(max(bbox[1], 0), height)
    x1, y1 = min(max(bbox[0] + bbox[2], 0), width), min(max(bbox[1] + bbox[3], 0), height)
    return [x0, y0, x1 - x0, y1 - y0]


def _group_targets(images: list[dict[str, Any]], annotations: list[dict[str, Any]],
                   label_of: dict[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image, in `images` order: (xyxy float32 boxes, int64 labels) of its non-crowd annotations."""
    by_image: dict[int, list[dict[str, Any]]] = {e["id"]: [] for e in images}
    for annotation in annotations:
        if not annotation.get("iscrowd"):
            by_image[annotation["image_id"]].append(annotation)
    targets = []
    for entry in images:
        group = by_image[entry["id"]]
        boxes = np.array([a["bbox"] for a in group], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = np.array([label_of[a["category_id"]] for a in group], dtype=np.int64)
        targets.append((boxes.astype(np.float32), labels))
    return targets


@dataclass(frozen=True)
class CocoLayout:
    """Where a COCO-format data folder keeps its training and validation annotations and images."""

    train_json: Path
    train_images: Path
    val_json: Path
    val_images: Path
    description: str


def find_coco_layout(data_dir: str | Path) -> CocoLayout:
    """COCO's own layout (`annotations/instances_train*.json` + `train*/`, likewise val) or the export layout
    (`train/_annotations.coco.json` with the images beside it, and `valid/` or `val/` likewise)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such folder")
    coco_train, coco_val = _coco_split(data_dir, "train"), _coco_split(data_dir, "val")
    if coco_train and coco_val:
        return CocoLayout(*coco_train, *coco_val, f"COCO layout: {_describe(data_dir, coco_train, coco_val)}")
    export_train = _export_split(data_dir, ("train",))
    export_val = _export_split(data_dir, ("valid", "val"))
    if export_train and export_val:
        return CocoLayout(*export_train, *export_val, f"export layout: {_describe(data_dir, export_train, export_val)}")
    raise DataError(f"{data_dir}: no COCO-format data; expected annotations/instances_train*.json + train*/ and "
                    f"annotations/instances_val*.json + val*/ (COCO layout), or train/{ANNOTATION_FILE} and "
                    f"valid/{ANNOTATION_FILE} (or val/) with the images beside them (export layout)")


def _coco_split(data_dir: Path, split: str) -> tuple[Path, Path] | None:
    """`annotations/instances_<split><suffix>.json` with its `<split><suffix>/` folder; the newest suffix wins."""
    prefix = f"instances_{split}"
    for annotation_file in sorted((data_dir / "annotations").glob(f"{prefix}*.json"), reverse=True):
        image_dir = data_dir / f"{split}{annotation_file.stem[len(prefix):]}"
        if image_dir.is_dir():
            return annotation_file, image_dir
    return None


def _export_split(data_dir: Path, names: tuple[str, ...]) -> tuple[Path, Path] | None:
    for name in names:
        if (data_dir / name / ANNOTATION_FILE).is_file():
            return data_dir / name / ANNOTATION_FILE, data_dir / name
    return None


def _describe(data_dir: Path, train: tuple[Path, Path], val: tuple[Path, Path]) -> str:
    """E.g. 'annotations/instances_train2017.json + train2017/, annotations/instances_val2017.json + val2017/'."""
    return ", ".join(f"{json_file.relative_to(data_dir)} + {images.relative_to(data_dir)}/"
                     for json_file, images in (train, val))
