"""The task-neutral training engine: `fit(task, config)` runs any task defined as a `Task`."""

from .config import RESUMABLE_CHANGES, TrainingOptions
from .loop import train_one_epoch
from .task import Task, TaskData
from .trainer import TrainingError, TrainResult, fit

__all__ = ["RESUMABLE_CHANGES", "Task", "TaskData", "TrainResult", "TrainingError", "TrainingOptions", "fit",
           "train_one_epoch"]
