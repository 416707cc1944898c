"""Read a weights file safely, recognise whose layout it is, and rename its tensors onto our modules.

Layouts: torchvision (`features.N.conv|block...`), timm (`conv_stem`, `blocks.S.B...`; `tf_*` ports need
TensorFlow padding and BN eps 1e-3), and ours (safetensors with the config in its metadata). Each layout brings
the build options its numbers were trained with (BN eps, padding), so its outputs are reproduced exactly.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

CONFIG_KEY = "mobilenets.config"
META_KEY = "mobilenets.meta"  # what a task stores beside the weights: class names, preprocessing, metrics
STATE_FORMAT = "mobilenets.train-state"  # a run's last.pt: weights, optimizer, schedule, history, config
# Build options that are not architecture flags: what `create_model` needs besides the name to rebuild a model.
BUILD_ARGS = ("name", "width_mult", "num_classes", "dropout")


_TF_PORT = re.compile(r"(^|[-_.])tf_mobilenetv3")


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the model; the message names the file."""


@dataclass
class Checkpoint:
    """Tensors read from one file, with their layout and the build options that layout implies."""

    path: Path
    layout: str
    state: dict[str, torch.Tensor]
    build_options: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    task: str | None = None  # the training run's task, for a run's last.pt


def _first_line(error: BaseException) -> str:
    """The error's first sentence: torch follows its reason with paragraphs of advice."""
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(error).__name__


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except Exception as e:  # safetensors' own error type is not exported by every version
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None


def load_torch_file(path: Path) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, so no code in the file can run."""
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol: the refusal below says more, in one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is a paragraph; keep the line that says why
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if code := next((line for line in lines if "global" in line.lower()), None):
            raise WeightsError(f"{path}: refused to load: it holds objects other than tensors, and loading them "
                               f"could run code ({code})") from None
        reason = str(e).partition("WeightsUnpickler error:")[2].strip() or lines[0]
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({reason.splitlines()[0]})") from None
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({_first_line(e)})") from None


def _state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded .pth/.pt: the state_dict itself, or the one a training checkpoint wraps."""
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: holds no state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _has_key(state: dict[str, torch.Tensor], pattern: str) -> bool:
    regex = re.compile(pattern)
    return any(regex.match(k) for k in state)


def _json_object(path: Path, text: str, key: str) -> dict[str, Any]:
    """Metadata entry `key` as a JSON object, or WeightsError naming the file."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise WeightsError(f"{path}: its {key} metadata is not valid JSON") from None
    if not isinstance(value, dict):
        raise WeightsError(f"{path}: its {key} metadata is a {type(value).__name__}, not a JSON object")
    return value


def _without_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def read_weights(path: str | Path) -> Checkpoint:
    """Read a weights file (.safetensors, or .pth/.pt with weights_only=True, a run's last.pt included) and detect
    its layout."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: a folder, not a weights file")
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    metadata: dict[str, str] = {}
    if path.suffix == ".safetensors":
        state, metadata = _read_safetensors(path)
    else:
        loaded = load_torch_file(path)
        state = _state_dict(loaded, path)
        if isinstance(loaded, dict) and loaded.get("format") == STATE_FORMAT:
            config = dict(loaded.get("model_config") or {})
            return Checkpoint(path, "mobilenets", _without_counters(state),
                              {k: v for k, v in config.items() if k not in BUILD_ARGS}, config,
                              dict(loaded.get("meta") or {}), loaded.get("task"))
    state = _without_counters(state)
    if CONFIG_KEY in metadata:
        config, meta = (_json_object(path, metadata.get(key, "{}"), key) for key in (CONFIG_KEY, META_KEY))
        options = {k: v for k, v in config.items() if k not in BUILD_ARGS}
        return Checkpoint(path, "mobilenets", state, options, config, meta, meta.get("task"))
    if _has_key(state, r"features\.\d+\.block\."):
        return Checkpoint(path, "torchvision", state, {"bn_eps": 1e-3, "bn_momentum": 0.01})
    if _has_key(state, r"features\.\d+\.conv\."):
        return Checkpoint(path, "torchvision", state)
    if "conv_stem.weight" in state:
        # timm's TensorFlow ports have the same keys as its own models; their file or hub folder names say so
        # (tf_mobilenetv3_large_100-427764d5.pth, models--timm--tf_mobilenetv3_large_100.in1k/.../model.safetensors)
        if any(_TF_PORT.search(part) for part in path.parts):
            return Checkpoint(path, "timm-tf", state, {"tf_padding": True})
        return Checkpoint(path, "timm", state)
    if "features.0.0.weight" in state and any(k.startswith("head.") for k in state):
        return Checkpoint(path, "mobilenets", state)
    first = ", ".join(list(state)[:3])
    raise WeightsError(f"{path}: unrecognised layout (first keys: {first}); expected torchvision, timm or "
                       f"mobilenets weights")


Source = tuple[str, torch.Tensor]  # a tensor and the key it had in the file, for error messages


def _torchvision_block(index: int, children: dict[int, dict[str, Source]]) -> dict[str, Source]:
    """One torchvision V2/V3 block. Its children are numbered, so roles come from the order:
    [expand] → depthwise → [SE] → project, where V2 splits the projection into a bare conv and a bare BN."""
    units: list[dict[str, Source]] = []  # conv-norm(-act) units in order, keys relative to the unit
    se: dict[str, Source] = {}
    for child in sorted(children):
        tensors = children[child]
        if any(k.startswith(("fc1.", "fc2.")) for k in tensors):
            se = tensors
        elif set(tensors) == {"weight"} and tensors["weight"][1].ndim == 4:  # V2's bare projection conv
            units.append({"0.weight": tensors["weight"]})
        elif "running_mean" in tensors:  # V2's bare projection BN joins the conv before it
            units[-1].update({f"1.{k}": v for k, v in tensors.items()})
        else:
            units.append(tensors)
    roles = ["expand", "depthwise", "project"][-len(units):]
    out = {f"features.{index}.{role}.{k}": v for role, unit in zip(roles, units, strict=False) for k, v in unit.items()}
    out.update({f"features.{index}.se.{k}": v for k, v in se.items()})
    return out


def _from_torchvision(state: dict[str, torch.Tensor]) -> dict[str, Source]:
    block = re.compile(r"features\.(\d+)\.(?:conv|block)\.(\d+)\.(.+)")
    blocks: dict[int, dict[int, dict[str, Source]]] = {}
    out: dict[str, Source] = {}
    linears = sorted({int(k.split(".")[1]) for k in state if k.startswith("classifier.")})
    head_names = {linears[-1]: "head.fc"} | ({linears[0]: "head.hidden.0"} if len(linears) > 1 else {})
    for key, tensor in state.items():
        if m := block.fullmatch(key):
            blocks.setdefault(int(m[1]), {}).setdefault(int(m[2]), {})[m[3]] = (key, tensor)
        elif key.startswith("classifier."):
            _, index, param = key.split(".")
            out[f"{head_names[int(index)]}.{param}"] = (key, tensor)
        else:  # stem and last conv: torchvision's Conv2dNormActivation names, the same as ours
            out[key] = (key, tensor)
    for index, children in blocks.items():
        out.update(_torchvision_block(index, children))
    return out


_TIMM_INVERTED_RESIDUAL = {"conv_pw": "expand.0", "bn1": "expand.1", "conv_dw": "depthwise.0",
                           "bn2": "depthwise.1", "conv_pwl": "project.0", "bn3": "project.1"}
_TIMM_SEPARABLE = {"conv_dw": "depthwise.0", "bn1": "depthwise.1", "conv_pw": "{pw}.0", "bn2": "{pw}.1"}
_TIMM_CONV = {"conv": "0", "bn1": "1"}
_TIMM_SE = {"se.conv_reduce": "se.fc1", "se.conv_expand": "se.fc2"}


def _from_timm(state: dict[str, torch.Tensor], target: set[str]) -> dict[str, Source]:
    """timm numbers blocks by stage (`blocks.S.B`); ours are one flat sequence after the stem."""
    block = re.compile(r"blocks\.(\d+)\.(\d+)\.(.+)\.(\w+)")
    positions = sorted({(int(m[1]), int(m[2])) for k in state if (m := block.fullmatch(k))})
    flat = {pos: i + 1 for i, pos in enumerate(positions)}
    last_conv = len(positions) + 1
    top = {"conv_stem": "features.0.0", "bn1": "features.0.1", "classifier": "head.fc",
           # V1/V2: conv_head + bn2 is the last 1x1 conv; V3: conv_head (with bias, no BN) is the hidden layer
           "conv_head": f"features.{last_conv}.0" if "bn2.weight" in state else "head.hidden.0",
           "bn2": f"features.{last_conv}.1"}
    out: dict[str, Source] = {}
    for key, tensor in state.items():
        if m := block.fullmatch(key):
            index, module, param = flat[(int(m[1]), int(m[2]))], m[3], m[4]
            prefix = f"blocks.{m[1]}.{m[2]}."
            if f"{prefix}conv_pwl.weight" in state:
                names = _TIMM_INVERTED_RESIDUAL
            elif f"{prefix}conv_dw.weight" in state:
                pw = "pointwise" if f"features.{index}.pointwise.0.weight" in target else "project"
                names = {k: v.format(pw=pw) for k, v in _TIMM_SEPARABLE.items()}
            else:
                names = _TIMM_CONV
            module = names.get(module) or _TIMM_SE.get(module, module)
            out[f"features.{index}.{module}.{param}"] = (key, tensor)
        else:
            module, param = key.rsplit(".", 1)
            out[f"{top.get(module, module)}.{param}"] = (key, tensor)
    return out


def _describe(model: nn.Module) -> str:
    config = getattr(model, "config", {})
    return f"{config.get('name', type(model).__name__)}(width_mult={config.get('width_mult')}, " \
           f"num_classes={config.get('num_classes')})"


def _convert(model: nn.Module, checkpoint: Checkpoint) -> dict[str, Source]:
    """The checkpoint's tensors under our names (1x1-conv heads reshaped to Linear where the model has one)."""
    target = model.state_dict()
    if checkpoint.layout == "torchvision":
        converted = _from_torchvision(checkpoint.state)
    elif checkpoint.layout.startswith("timm"):
        converted = _from_timm(checkpoint.state, set(target))
    else:
        converted = {k: (k, v) for k, v in checkpoint.state.items()}
    for key, (source, tensor) in converted.items():
        if key in target and target[key].ndim == 2 and tensor.ndim == 4 and tensor.shape[2:] == (1, 1):
            converted[key] = (source, tensor.flatten(1))
    return converted


def checkpoint_num_classes(model: nn.Module, checkpoint: Checkpoint) -> int | None:
    """How many classes the checkpoint's classifier has (None: it has none)."""
    fc = _convert(model, checkpoint).get("head.fc.weight")
    return None if fc is None else fc[1].shape[0]


def load_into(model: nn.Module, checkpoint: Checkpoint, *, skip_classifier: bool = False,
              features_only: bool = False, check_only: bool = False) -> None:
    """Copy a checkpoint's tensors into `model`, or fail naming the first missing, unexpected or misshapen key.

    `skip_classifier` leaves the model's final linear layer as it is (fine-tuning on other classes);
    `features_only` copies only the feature extractor (`features.*`: a detector's backbone); `check_only` only
    checks (e.g. a model on the meta device, built to see whether the checkpoint fits before memory is spent).
    """
    def wanted(key: str) -> bool:
        if key.endswith("num_batches_tracked") or (features_only and not key.startswith("features.")):
            return False
        return not (skip_classifier and key.startswith("head.fc."))

    target = {k: v for k, v in model.state_dict().items() if wanted(k)}
    converted = {k: v for k, v in _convert(model, checkpoint).items() if wanted(k)}
    problems = []
    if missing := [k for k in target if k not in converted]:
        problems.append(f"missing {missing[0]} {tuple(target[missing[0]].shape)} ({len(missing)} missing)")
    if unexpected := [k for k in converted if k not in target]:
        source, tensor = converted[unexpected[0]]
        problems.append(f"unexpected {source} {tuple(tensor.shape)} ({len(unexpected)} unexpected)")
    if misshapen := [k for k in converted if k in target and converted[k][1].shape != target[k].shape]:
        source, tensor = converted[misshapen[0]]
        problems.append(f"{source} has shape {tuple(tensor.shape)} in the file but {misshapen[0]} is "
                        f"{tuple(target[misshapen[0]].shape)} in the model")
    if problems:
        raise WeightsError(f"{checkpoint.path} ({checkpoint.layout} layout) does not fit {_describe(model)}: "
                           + "; ".join(problems))
    if not check_only:
        model.load_state_dict({k: tensor for k, (_, tensor) in converted.items()}, strict=False)
