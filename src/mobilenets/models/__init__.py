"""The model zoo: architecture tables, blocks, the builder and the registry of names."""

from .mobilenet import FeatureInfo, MobileNet
from .registry import architecture_options, build_model, list_models

__all__ = ["FeatureInfo", "MobileNet", "architecture_options", "build_model", "list_models"]
