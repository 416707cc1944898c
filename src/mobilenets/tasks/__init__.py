"""The registry of tasks: what the command line, the loaders, the server and the experiments know of each task.

A task is a package of its own (`tasks/classification/`, `tasks/detection/`) that describes itself with one
`TaskDefinition`: its options, its training function, how its checkpoints and exported files load, how it exports
and what the server runs. Code outside a task's package looks the task up here (`get_task`) instead of
recognising it by its model's name, so adding a task is adding a package (docs/adding-a-task.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the tasks this package ships, imported when first asked for (a task's package imports torch and its data code)
_BUILT_IN = {"classification": f"{__name__}.classification", "detection": f"{__name__}.detection"}
# a zoo network's file that records no task, and a foreign (torchvision, timm) weights file, hold a classifier
DEFAULT_TASK = "classification"
_REGISTERED: dict[str, TaskDefinition] = {}


@dataclass(frozen=True)
class TaskDefinition:
    """One task as the rest of the package uses it.

    `config`: its options dataclass; `make_config(recipe, **options)`: the checked options; `train(config,
    progress=...)`: the run (engine.fit underneath); `load(path)`: a checkpoint or exported file as the task's
    loaded model (an object with `.model`, `.classes` and `.source`); `from_exported(ExportedModel)`: the same
    for a file already opened; `export(path, output, **options)`: a checkpoint exported for inference (returns
    the written path); `servable(loaded, **options)`: what `mobilenets serve` runs; `recognises(config, meta)`:
    whether a file that records no task (written before tasks were recorded) is this task's.
    """

    name: str
    noun: str  # what its model is called in messages and file names: "classifier", "detector"
    summary: str
    config: type
    make_config: Callable[..., Any]
    train: Callable[..., Any]
    load: Callable[[str | Path], Any]
    from_exported: Callable[[Any], Any]
    export: Callable[..., Path]
    servable: Callable[..., Any]
    add_commands: Callable[[Any], None] | None = None  # its `mobilenets` commands (argparse subparsers), if any
    recognises: Callable[[Mapping[str, Any] | None, Mapping[str, Any]], bool] = field(
        default=lambda config, meta: False)


def register_task(definition: TaskDefinition) -> TaskDefinition:
    """Make `definition` known by its name (a task of another package, or a test's); returns it."""
    _REGISTERED[definition.name] = definition
    return definition


def list_tasks() -> list[str]:
    """The names of the tasks: the built-in ones, then those registered."""
    return [*_BUILT_IN, *(name for name in _REGISTERED if name not in _BUILT_IN)]


def get_task(name: str) -> TaskDefinition:
    """The definition of task `name`; ValueError naming the known tasks for another name."""
    if name not in _REGISTERED and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])  # its package registers its definition
    if name not in _REGISTERED:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(list_tasks())}")
    return _REGISTERED[name]


def task_of(config: Mapping[str, Any] | None, meta: Mapping[str, Any]) -> str:
    """The task a file holds, from what it records: its `task` if it has one, else the task that recognises its
    model config and metadata, else DEFAULT_TASK. The one place where a file's task is derived."""
    recorded = meta.get("task")
    if isinstance(recorded, str) and recorded:
        return recorded
    return next((name for name in list_tasks() if name != DEFAULT_TASK and get_task(name).recognises(config, meta)),
                DEFAULT_TASK)


def checkpoint_task(checkpoint: Any) -> str:
    """The task of a `weights.convert.Checkpoint` (`task_of` over its config, metadata and recorded task)."""
    return task_of(checkpoint.config, {**checkpoint.meta, "task": checkpoint.task})
