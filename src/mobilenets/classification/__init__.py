"""Image classification with any zoo model: train, evaluate, predict, export."""

from ..engine import TrainingError, TrainResult
from .checkpoint import Classifier, load_classifier
from .config import ConfigError, TrainConfig, make_config
from .evaluate import evaluate
from .export import export_classifier
from .predict import Prediction, predict
from .task import CLASSIFICATION, ClassificationTask, train

__all__ = ["CLASSIFICATION", "ClassificationTask", "Classifier", "ConfigError", "Prediction", "TrainConfig",
           "TrainResult", "TrainingError", "evaluate", "export_classifier", "load_classifier", "make_config",
           "predict", "train"]
