"""Image classification with any zoo model: train, evaluate, predict, export, serve; the default task (a zoo
network's file that records no task holds a classifier)."""

from pathlib import Path
from typing import Any

from ...engine import TrainingError, TrainResult
from .. import TaskDefinition, register_task
from .checkpoint import Classifier, classifier_from_exported, load_classifier
from .config import ConfigError, TrainConfig, make_config
from .evaluate import evaluate
from .export import export_classifier
from .predict import Prediction, predict
from .serve import ServedClassifier
from .task import CLASSIFICATION, ClassificationTask, train


def _export(checkpoint: str | Path, output: str | Path, *, format: str = "onnx", **options: Any) -> Path:
    return export_classifier(checkpoint, format, output, **options).path


def _servable(classifier: Classifier, *, top_k: int = 5, **_: Any) -> ServedClassifier:
    return ServedClassifier(classifier, top_k)


DEFINITION = register_task(TaskDefinition(
    name=CLASSIFICATION.name, noun="classifier", summary="image classification with any zoo network",
    config=TrainConfig, make_config=make_config, train=train, load=load_classifier,
    from_exported=classifier_from_exported, export=_export, servable=_servable))

__all__ = ["CLASSIFICATION", "DEFINITION", "ClassificationTask", "Classifier", "ConfigError", "Prediction",
           "TrainConfig", "TrainResult", "TrainingError", "evaluate", "export_classifier", "load_classifier",
           "make_config", "predict", "train"]
