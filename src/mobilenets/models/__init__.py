"""The model zoo: architecture tables, blocks, the builder and the registry of names."""

from .mobilenet import FeatureInfo, MobileNet
from .registry import build_model, create_model, list_models

__all__ = ["FeatureInfo", "MobileNet", "build_model", "create_model", "list_models"]
