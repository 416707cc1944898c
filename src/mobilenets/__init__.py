"""mobilenets: MobileNet V1, V2, V3-Large and V3-Small that match the papers, for CPUs and phones."""

from . import detection
from .classification import evaluate, predict, train
from .detection import create_detector
from .factory import create_model
from .models import FeatureInfo, MobileNet, list_models
from .profile import Profile, profile
from .weights import load, save, transforms_for

__all__ = [
    "FeatureInfo", "MobileNet", "Profile", "create_detector", "create_model", "detection", "evaluate", "list_models",
    "load", "predict", "profile", "save", "train", "transforms_for",
]
__version__ = "0.1.0"
