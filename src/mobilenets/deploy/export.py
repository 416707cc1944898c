"""Export a zoo model for inference: batch norm folded into the convolutions, dropout gone, fixed or dynamic batch.

ONNX: opset 18 (HardSwish needs >= 14, HardSigmoid >= 6; 18 is the newest onnxruntime >= 1.16 runs fully
optimised). hard-swish and hard-sigmoid are exported as ONNX's own HardSwish/HardSigmoid operators, which
onnxruntime fuses into the preceding convolution. Global average pooling is written as GlobalAveragePool, not
the exporter's ReduceMean over height and width: the same maths, but onnxruntime keeps GlobalAveragePool in its
blocked NCHWc layout (about half of MobileNetV3's layout reorders go) and quantizes it. Squeeze-excitation's
channel scale is broadcast to the feature map's size by a nearest Resize before its Mul: onnxruntime runs a Mul
of two equal shapes in NCHWc but reorders both operands out and the product back for a broadcast Mul, so the
Resize removes the other half (fp32 V3 faster than the same export without it: docs/benchmarks.md; other
runtimes pay one small Resize per SE block; `quantize` drops it again, int8 kernels broadcast natively). The
preprocessing the model expects is written into the model's metadata (`mobilenets.preprocess`), beside its class names.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

from .._atomic import atomic_path

log = logging.getLogger(__name__)

OPSET = 18

CHANNEL_BROADCAST = "channel_broadcast"  # name prefix of the Resize nodes `_broadcast_channel_scales` adds


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` in which every conv → BN pair became one conv with a bias."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, nn.Sequential) and len(module) >= 2 and isinstance(module[0], nn.Conv2d) \
                and isinstance(module[1], (nn.BatchNorm2d, FrozenBatchNorm2d)):
            conv, bn = module[0], module[1]
            weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                                bn.weight, bn.bias)
            conv.weight, conv.bias = weight, bias
            module[1] = nn.Identity()
    return model


def _onnx(model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, meta: dict[str, Any],
          output_names: list[str]) -> None:
    import onnx

    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
    program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET, input_names=["image"],
                                output_names=output_names, dynamic_shapes=dynamic_shapes, optimize=True,
                                verbose=False)
    proto = program.model_proto
    types = _inferred_types(proto)
    _global_average_pools(proto.graph, types)
    _broadcast_channel_scales(proto.graph, types)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def _inferred_types(proto) -> dict:
    """Each tensor's ONNX type (element type and shape) by name, from ONNX shape inference."""
    import onnx

    typed = [*onnx.shape_inference.infer_shapes(proto).graph.value_info, *proto.graph.input]
    return {v.name: v.type for v in typed}


def _shape(types: dict, name: str) -> tuple[int | str | None, ...] | None:
    """The shape of tensor `name`: a number per fixed dimension, the name of a named one (e.g. a dynamic batch),
    else None; None if the shape is unknown."""
    if name not in types:
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or None
                 for d in types[name].tensor_type.shape.dim)


def _global_average_pools(graph, types: dict) -> None:
    """Rewrite every ReduceMean over both spatial axes of a 4-D tensor (keepdims) as GlobalAveragePool, in place."""
    import onnx
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for position, node in enumerate(graph.node):
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        if node.op_type != "ReduceMean" or len(node.input) != 2 or not keepdims \
                or len(_shape(types, node.input[0]) or ()) != 4:
            continue
        axes = constants.get(node.input[1])
        if axes is not None and sorted(int(a) % 4 for a in axes.ravel()) == [2, 3]:
            graph.node.remove(node)
            graph.node.insert(position, onnx.helper.make_node("GlobalAveragePool", [node.input[0]],
                                                              list(node.output), name=node.name))
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)


def _broadcast_channel_scales(graph, types: dict) -> None:
    """Give every Mul of a feature map (N, C, H, W) by a computed channel scale (N, C, 1, 1), H and W fixed and not
    both 1, a nearest Resize of the scale to (N, C, H, W) first, in place: the same values, in onnxruntime's
    NCHWc."""
    import onnx
    from onnx import numpy_helper

    constants = {t.name for t in graph.initializer}
    for node in [n for n in graph.node if n.op_type == "Mul" and len(n.input) == 2]:
        for scale_index in (0, 1):
            scale, features = _shape(types, node.input[scale_index]), _shape(types, node.input[1 - scale_index])
            if node.input[scale_index] in constants or scale is None or features is None or len(scale) != 4 \
                    or len(features) != 4:
                continue
            height, width = features[2:]
            if scale[2:] == (1, 1) and None not in scale[:2] and scale[:2] == features[:2] \
                    and isinstance(height, int) and isinstance(width, int) and height * width > 1:
                name = f"{CHANNEL_BROADCAST}/{node.name or node.output[0]}"
                factors = numpy_helper.from_array(np.array([1, 1, height, width], np.float32), f"{name}/scales")
                graph.initializer.append(factors)
                resize = onnx.helper.make_node("Resize", [node.input[scale_index], "", factors.name], [f"{name}/out"],
                                               name=name, mode="nearest", coordinate_transformation_mode="asymmetric",
                                               nearest_mode="floor")
                graph.node.insert(list(graph.node).index(node), resize)
                node.input[scale_index] = resize.output[0]
                typed = graph.value_info.add()  # the batch dimension by name too, so onnxruntime sees equal shapes
                typed.name = resize.output[0]
                typed.type.CopyFrom(types[node.input[1 - scale_index]])
                break


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, meta: dict[str, str],
                 output_names: list[str]) -> None:
    log.warning("TorchScript is deprecated in PyTorch; torch.export's pt2 format (--format pt2) succeeds it")
    with warnings.catch_warnings():  # the line above instead of torch's three, one per jit call
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        scripted = torch.jit.freeze(torch.jit.script(model))
        with atomic_path(path) as tmp:
            torch.jit.save(scripted, str(tmp), _extra_files={k: v.encode() for k, v in meta.items()})


def _pt2(model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, meta: dict[str, str],
         output_names: list[str]) -> None:
    batch = torch.export.Dim("batch", min=1, max=1024) if dynamic_batch else None
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},) if batch else None)
    archive = io.BytesIO()  # torch.export.save wants a name ending in .pt2 or a buffer, not our temp name
    torch.export.save(program, archive, extra_files=meta)
    with atomic_path(path) as tmp:
        tmp.write_bytes(archive.getvalue())


_GRAPH_WRITERS = {"onnx": _onnx, "torchscript": _torchscript, "pt2": _pt2}


def export_graph(model: nn.Module, format: str, output: str | Path, *, resolution: int = 224,
                 dynamic_batch: bool = False, metadata: dict[str, Any] | None = None,
                 output_names: list[str] | None = None) -> Path:
    """Write `model` (BN folded, eval mode) as `format` ('onnx', 'torchscript', 'pt2') to `output`.

    `metadata` (e.g. class names, preprocessing) goes into the ONNX metadata or the TorchScript extra files;
    `output_names` name the ONNX outputs (default: one output, `logits`).
    """
    if format not in _GRAPH_WRITERS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(_GRAPH_WRITERS)}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    folded = fold_batchnorm(model)
    example = torch.randn(2 if dynamic_batch else 1, 3, resolution, resolution)
    meta = {f"mobilenets.{k}": json.dumps(v) for k, v in (metadata or {}).items()}
    with torch.no_grad():
        _GRAPH_WRITERS[format](folded, example, output, dynamic_batch, meta, output_names or ["logits"])
    return output
