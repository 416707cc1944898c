"""The task-neutral training engine: `fit(task, config)` runs any task defined as a `Task`."""

from .config import OPTIMIZERS, RESUMABLE_CHANGES, SCHEDULES, TrainingOptions
from .distributed import choose_device
from .loop import EpochStats, NonFiniteLossError, autocast, images_to, train_one_epoch
from .task import Task, TaskData
from .trainer import TrainingError, TrainResult, fit

__all__ = ["OPTIMIZERS", "RESUMABLE_CHANGES", "SCHEDULES", "EpochStats", "NonFiniteLossError", "Task", "TaskData",
           "TrainResult", "TrainingError", "TrainingOptions", "autocast", "choose_device", "fit", "images_to",
           "train_one_epoch"]
