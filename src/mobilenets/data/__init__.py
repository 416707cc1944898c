"""Data for classification: the built-in SyntheticShapes set, ImageFolder-style real data, and transforms."""

from .folder import DataError, FolderSplit, ImageFiles, load_rgb, resolve_image_folder, scan_image_folder
from .synthetic import SHAPE_CLASSES, SyntheticShapes
from .transforms import Augment, Preprocess, default_preprocess, eval_transform, train_transform

__all__ = [
    "SHAPE_CLASSES", "Augment", "DataError", "FolderSplit", "ImageFiles", "Preprocess", "SyntheticShapes",
    "default_preprocess", "eval_transform", "load_rgb", "resolve_image_folder", "scan_image_folder",
    "train_transform",
]
