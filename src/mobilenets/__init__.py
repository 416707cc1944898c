"""mobilenets: MobileNet V1, V2, V3-Large and V3-Small that match the papers, for CPUs and phones."""

from .models import FeatureInfo, MobileNet, create_model, list_models
from .profile import Profile, profile
from .weights import load, save, transforms_for

__all__ = [
    "FeatureInfo", "MobileNet", "Profile", "create_model", "list_models", "load", "profile", "save", "transforms_for",
]
__version__ = "0.1.0"
