"""Weights: reading other libraries' checkpoints, saving and loading ours, and the published-weights registry."""

from .convert import Checkpoint, WeightsError, load_into, read_weights
from .io import load, save
from .registry import PublishedWeights, download, get_published, list_published, transforms_for

__all__ = [
    "Checkpoint", "PublishedWeights", "WeightsError", "download", "get_published", "list_published", "load",
    "load_into", "read_weights", "save", "transforms_for",
]
