"""Image classification with any zoo model: train, evaluate, predict."""

from .checkpoint import Classifier, load_classifier
from .config import ConfigError, TrainConfig, make_config
from .evaluate import evaluate
from .predict import Prediction, predict
from .train import TrainingError, train

__all__ = ["Classifier", "ConfigError", "Prediction", "TrainConfig", "TrainingError", "evaluate", "load_classifier",
           "make_config", "predict", "train"]
