"""Our own files, and the one way from a checkpoint to a model.

`save` writes safetensors with the config that rebuilds the network; `save_training_state` a run's resumable
`last.pt`. `model_from_checkpoint` rebuilds and fills the model any of our checkpoints describes (a classifier or
a detector, `best.safetensors` or `last.pt`), and `require_architecture` refuses, in one line naming both, an
architecture asked for that a checkpoint contradicts: training, evaluation, prediction, export and fine-tuning
all go through these two.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import save_file
from torch import nn

from .._atomic import atomic_path
from ..models import MobileNet, build_model
from ..models.registry import without_idle_options
from ..tasks import DEFAULT_TASK, checkpoint_task, get_task
from .convert import CONFIG_KEY, META_KEY, STATE_FORMAT, Checkpoint, WeightsError, load_into, read_weights

Model = TypeVar("Model", bound=nn.Module)


def save(model: nn.Module, path: str | Path, *, meta: dict[str, Any] | None = None) -> Path:
    """Write `model` (a MobileNet or a detector: anything with a `config` dict) as safetensors with its config
    (and `meta`, e.g. class names and preprocessing) in the metadata, atomically: a temp file renamed into place,
    so a crash never leaves a half-written file."""
    path = Path(path)
    try:
        config = json.dumps(model.config)
        meta_json = json.dumps(meta or {})
    except TypeError:
        raise ValueError(f"{path}: cannot save a model built with non-name options (pass act_layer and "
                         f"norm_layer as names, e.g. 'relu6', 'frozen_batchnorm'): {model.config}") from None
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={CONFIG_KEY: config, META_KEY: meta_json, "format": "pt"})
    return path


def save_training_state(path: Path, task: str, state: dict[str, Any]) -> None:
    """Write a run's `last.pt` atomically: a kill at any moment leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": STATE_FORMAT, "task": task, **state}, tmp)


def require_architecture(checkpoint: Checkpoint, asked: Mapping[str, tuple[Any, str]]) -> None:
    """Refuse an architecture the checkpoint contradicts: `asked` maps a build option (`name`, `width_mult`, ...) to
    (the value asked for, the option that asked, e.g. '--width'). What the checkpoint knows comes from its config
    (ours) or its published-weights entry; a foreign file without either is checked by shape when loaded."""
    known = {**(checkpoint.config or {}), **checkpoint.build_options}
    task = get_task(checkpoint_task(checkpoint))
    what = known.get("name", "model") if task.name == DEFAULT_TASK else task.noun
    if task.name != DEFAULT_TASK and "name" in asked:
        raise WeightsError(f"{checkpoint.path}: a {task.noun}, not a {asked['name'][0]} (it initialises a "
                           f"{task.noun}'s training, with --pretrained)")
    for key, (wanted, option) in asked.items():
        have = known.get(key)
        if wanted is None or have is None or have == wanted:
            continue
        hint = f"{option} {have}" if option.startswith("-") else f"{option}={have!r}"
        raise WeightsError(f"{checkpoint.path}: a {what} with {key} {have}, but this run asks for {wanted} "
                           f"(pass {hint})")


def model_from_checkpoint(checkpoint: Checkpoint, build: Callable[..., Model] = build_model) -> Model:
    """The model one of our checkpoints describes, rebuilt by `build(**config)` (`build_model` for a zoo network,
    `create_detector` for a detector) and filled with its tensors."""
    if checkpoint.config is None:
        raise WeightsError(f"{checkpoint.path}: holds no mobilenets config (for torchvision or timm weights use "
                           f"create_model(name, weights=path))")
    config = without_idle_options(checkpoint.config) if build is build_model else checkpoint.config
    try:
        with torch.device("meta"):  # no memory: a config that disagrees with the tensors is refused first
            load_into(build(**config), checkpoint, check_only=True)
    except (TypeError, ValueError, KeyError) as e:
        if isinstance(e, WeightsError):
            raise
        raise WeightsError(f"{checkpoint.path}: its config does not describe a model ({e})") from None
    model = build(**config)
    load_into(model, checkpoint)
    return model


def load(path: str | Path) -> MobileNet:
    """Rebuild and fill a model saved by `save`: the same architecture, options and tensors."""
    checkpoint = read_weights(path)
    if (task := checkpoint_task(checkpoint)) != DEFAULT_TASK:
        raise WeightsError(f"{path}: a {get_task(task).noun}; load it with mobilenets.tasks.get_task({task!r}).load")
    return model_from_checkpoint(checkpoint)
