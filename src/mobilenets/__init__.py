"""mobilenets: MobileNet V1, V2, V3-Large and V3-Small that match the papers, for CPUs and phones."""

from ._version import __version__ as __version__
from .factory import create_model
from .models import FeatureInfo, MobileNet, list_models
from .profile import Profile, profile
from .tasks import detection
from .tasks.classification import evaluate, predict, train
from .tasks.detection import create_detector
from .weights import load, save, transforms_for

__all__ = [
    "FeatureInfo", "MobileNet", "Profile", "create_detector", "create_model", "detection", "evaluate", "list_models",
    "load", "predict", "profile", "save", "train", "transforms_for",
]
