"""Export a zoo model for inference: batch norm folded into the convolutions, dropout gone, fixed or dynamic batch.

ONNX: opset 18 (HardSwish needs >= 14, HardSigmoid >= 6; 18 is the newest onnxruntime >= 1.16 runs fully
optimised). hard-swish and hard-sigmoid are exported as ONNX's own HardSwish/HardSigmoid operators, which
onnxruntime fuses into the preceding convolution. Global average pooling is written as GlobalAveragePool, not
the exporter's ReduceMean over height and width: the same maths, but onnxruntime keeps GlobalAveragePool in its
blocked NCHWc layout (about half of MobileNetV3's layout reorders go) and quantizes it. The preprocessing the
model expects is written into the model's metadata (`mobilenets.preprocess`), beside its class names.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

from .._atomic import atomic_path

FORMATS = ("onnx", "torchscript", "pt2")
OPSET = 18


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
    _global_average_pools(proto)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def _global_average_pools(proto) -> None:
    """Rewrite every ReduceMean over both spatial axes of a 4-D tensor (keepdims) as GlobalAveragePool, in place."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    typed = [*onnx.shape_inference.infer_shapes(proto).graph.value_info, *graph.input]
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in typed}
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for position, node in enumerate(graph.node):
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        if node.op_type != "ReduceMean" or len(node.input) != 2 or not keepdims or ranks.get(node.input[0]) != 4:
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


def export(model: nn.Module, format: str, output: str | Path, *, resolution: int = 224, dynamic_batch: bool = False,
           metadata: dict[str, Any] | None = None, output_names: list[str] | None = None) -> Path:
    """Write `model` (BN folded, eval mode) as `format` ('onnx', 'torchscript', 'pt2') to `output`.

    `metadata` (e.g. class names, preprocessing) goes into the ONNX metadata or the TorchScript extra files;
    `output_names` name the ONNX outputs (default: one output, `logits`).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    folded = fold_batchnorm(model)
    example = torch.randn(2 if dynamic_batch else 1, 3, resolution, resolution)
    meta = {f"mobilenets.{k}": json.dumps(v) for k, v in (metadata or {}).items()}
    with torch.no_grad():
        if format == "onnx":
            _onnx(folded, example, output, dynamic_batch, meta, output_names or ["logits"])
        elif format == "torchscript":
            scripted = torch.jit.freeze(torch.jit.script(folded))
            with atomic_path(output) as tmp:
                torch.jit.save(scripted, str(tmp), _extra_files={k: v.encode() for k, v in meta.items()})
        else:
            batch = torch.export.Dim("batch", min=1, max=1024) if dynamic_batch else None
            program = torch.export.export(folded, (example,), dynamic_shapes=({0: batch},) if batch else None)
            with atomic_path(output) as tmp:
                torch.export.save(program, str(tmp), extra_files=meta)
    return output
