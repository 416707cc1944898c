"""The datasets a detection run trains and validates on: the built-in synthetic set or COCO-format files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset, Subset

from ...data.folder import DataError
from ...data.wrappers import EpochSeeded, Transformed
from ...engine.task import TaskData
from .coco import CocoDetection, find_coco_layout
from .config import DetectConfig
from .synthetic import SyntheticDetection
from .transforms import collate, eval_transform, train_transform


@dataclass(kw_only=True)
class DetectionData(TaskData):
    """A run's data, with the validation ground truth in COCO format and the label → category id map."""

    category_ids: list[int]
    val_coco: dict[str, Any]


def restrict_coco(coco: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    """A COCO ground-truth dict reduced to the given images and their annotations."""
    return {**coco, "images": [i for i in coco["images"] if i["id"] in image_ids],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in image_ids]}


def _coco_sets(config: DetectConfig) -> tuple[CocoDetection, CocoDetection, str]:
    if config.data is not None:
        layout = find_coco_layout(config.data)
        files, description = (layout.train_json, layout.train_images, layout.val_json, layout.val_images), \
            layout.description
    else:
        files = (config.train_json, config.train_images, config.val_json, config.val_images)
        description = f"COCO files: {files[0]} + {files[1]}/, {files[2]} + {files[3]}/"
    train, val = CocoDetection(files[0], files[1]), CocoDetection(files[2], files[3])
    if (train.category_ids, train.classes) != (val.category_ids, val.classes):
        raise DataError(f"{files[2]}: its categories differ from those of {files[0]}")
    return train, val, description


def evaluation_sets(config: DetectConfig) -> tuple[Dataset, Dataset, list[str], list[int], dict[str, Any], str]:
    """(train, val) datasets of (PIL image, target), class names, category ids, the val ground truth, description."""
    if config.data is None and config.train_json is None:
        def synthetic(split: str, length: int) -> SyntheticDetection:
            return SyntheticDetection(split, size=config.image_size, length=length, seed=config.seed)

        train, val = synthetic("train", config.synthetic_train_size), synthetic("val", config.synthetic_val_size)
        return (train, val, train.classes, list(range(1, len(train.classes) + 1)), val.to_coco(),
                f"built-in synthetic detection set ({len(train)} train, {len(val)} val images, "
                f"{config.image_size}x{config.image_size})")
    train, val, description = _coco_sets(config)
    return train, val, train.classes, train.category_ids, val.coco, description


def build_detection_data(config: DetectConfig) -> DetectionData:
    """The run's data; with `overfit` N, the first N training images serve as both sets, unaugmented. A checkpoint
    keeps the class names, their COCO category ids and the input size."""
    train, val, classes, category_ids, val_coco, description = evaluation_sets(config)
    skipped = [*getattr(train, "skipped", []), *getattr(val, "skipped", [])]
    evaluate = eval_transform(config.image_size)
    if config.overfit:
        train = val = Subset(train, range(min(config.overfit, len(train))))
        truth = train.dataset.to_coco() if isinstance(train.dataset, SyntheticDetection) else train.dataset.coco
        val_coco = restrict_coco(truth, {train[i][1]["image_id"] for i in range(len(train))})
        description = f"overfit check: the first {len(train)} training images of the {description}"
        augment = evaluate
    else:
        augment = train_transform(config.image_size, flip=config.flip, scale=config.scale, colour=config.colour)
    return DetectionData(train=EpochSeeded(train, augment, config.seed), val=Transformed(val, evaluate),
                         classes=classes, category_ids=category_ids, val_coco=val_coco, description=description,
                         skipped=skipped, built_in=config.data is None and config.train_json is None,
                         collate=collate, meta={"classes": classes, "category_ids": category_ids,
                                                "image_size": config.image_size})
