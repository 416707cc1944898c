"""The datasets a classification run trains and validates on: the built-in shapes or an image folder."""

from __future__ import annotations

import dataclasses

from ...data.folder import ImageFiles, resolve_image_folder
from ...data.synthetic import SHAPE_CLASSES, SyntheticShapes
from ...data.transforms import Augment, default_preprocess, eval_transform, train_transform
from ...data.wrappers import EpochSeeded, ImageOnly, InMemoryImages, Transformed
from ...engine.task import TaskData
from .config import TrainConfig


def augment_of(config: TrainConfig) -> Augment:
    return Augment(crop_scale=config.crop_scale, hflip=config.hflip, color_jitter=config.color_jitter,
                   auto_augment=config.auto_augment, random_erasing=config.random_erasing)


def build_data(config: TrainConfig, progress: bool = True) -> TaskData:
    """The built-in synthetic shapes when `config.data` is None, else the image folder it names; a checkpoint
    keeps the class names and the preprocessing."""
    if config.data is None:
        train_base = InMemoryImages(SyntheticShapes("train", size=config.image_size,
                                                    length=config.synthetic_train_size, seed=config.seed),
                                    "drawing training shapes", progress)
        val_base = InMemoryImages(SyntheticShapes("val", size=config.image_size, length=config.synthetic_val_size,
                                                  seed=config.seed), "drawing validation shapes", progress)
        # the generated image is the whole scene: evaluate on all of it (no border crop)
        preprocess = dataclasses.replace(default_preprocess(config.image_size), resize=config.image_size)
        classes, skipped = list(SHAPE_CLASSES), []
        description = f"built-in synthetic shapes ({len(train_base)} train / {len(val_base)} val images)"
    else:
        split = resolve_image_folder(config.data, config.val_split, config.seed)
        classes, skipped = list(split.classes), list(split.skipped)
        train_base, val_base = ImageFiles(split.train, classes), ImageFiles(split.val, classes)
        preprocess = default_preprocess(config.image_size)
        description = (f"{config.data} ({split.layout}: {len(split.train)} train / {len(split.val)} val images, "
                       f"{len(classes)} classes, {len(skipped)} files skipped)")
    train = EpochSeeded(train_base, ImageOnly(train_transform(preprocess, augment_of(config))), config.seed)
    val = Transformed(val_base, ImageOnly(eval_transform(preprocess)))
    return TaskData(train=train, val=val, classes=classes, description=description, skipped=skipped,
                    meta={"classes": classes, "preprocess": preprocess.to_dict()}, built_in=config.data is None)
