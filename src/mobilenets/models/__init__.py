"""The model zoo: architecture tables, blocks, the builder and the registry of names."""

from .mobilenet import FeatureInfo, MobileNet
from .registry import MAX_WIDTH, architecture_options, build_model, list_models

__all__ = ["MAX_WIDTH", "FeatureInfo", "MobileNet", "architecture_options", "build_model", "list_models"]
