"""ExecuTorch programs (`.pte`) for phones and small CPUs: the network lowered whole to XNNPACK (the kernel library
TFLite uses on phones), in fp32 or int8 through PyTorch's PT2E quantization, with its metadata in a sidecar JSON so
that an app needs nothing else.

The flow is ExecuTorch's own: torch.export -> (int8: XNNPACKQuantizer, per-channel symmetric weights, calibrated
with torchao's prepare_pt2e/convert_pt2e) -> to_edge_transform_and_lower with the XNNPACK partitioner ->
to_executorch. Every operator must run inside the delegate: one left outside runs on ExecuTorch's slow portable
kernels, so it is refused, named.

int8 is not faster everywhere: on x86, XNNPACK's int8 kernels for the first convolution (its input needs a byte
transpose of the whole image), squeeze-excitation's broadcast multiply and depthwise convolutions over 3x3 are
slower than its fp32 ones (docs/benchmarks.md), so an int8 export for an x86 CPU keeps those in float unless told;
on ARM, where the program is meant to run, everything is int8.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import SqueezeExcitation

from .. import cpu
from .._atomic import atomic_paths, writable
from .._words import counted
from ..extras import require
from ..models.layers import NearestUpsample2x
from .export import fold_batchnorm
from .quantize import FloatGroups, checked_groups
from .runtime import import_executorch_quietly, sidecar_path

_DELEGATE_CALL = "executorch_call_delegate"
SLOWER_IN_INT8_ON_X86 = ("first_conv", "se", "large_depthwise")


class _DelegableHardsigmoid(nn.Module):
    """hardsigmoid as relu6(x + 3) / 6 with float constants: the edge dialect decomposes nn.Hardsigmoid with int64
    constants whose casts XNNPACK does not take, leaving them outside the delegate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class _UpsampleByCopies(nn.Module):
    """Nearest upsampling by 2 as concatenations of a channels-last map with itself, which XNNPACK runs as
    copies; its depthwise transposed convolution, the other exact form, is many times slower. Each concatenation
    takes two views, as XNNPACK takes no concatenation of a single input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n * h, w, 1, c)
        columns_doubled = torch.cat([rows, rows.view(n * h, w, 1, c)], 2).reshape(n, h, 1, 2 * w * c)
        doubled = torch.cat([columns_doubled, columns_doubled.view(n, h, 1, 2 * w * c)], 2)
        return doubled.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def _for_xnnpack(model: nn.Module) -> nn.Module:
    """A batch-norm-folded eval copy of `model` whose every operator XNNPACK takes: hard-sigmoid with float
    constants, nearest upsampling as copies (XNNPACK has no nearest resize)."""
    folded = fold_batchnorm(model)
    for parent in list(folded.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Hardsigmoid):
                setattr(parent, name, _DelegableHardsigmoid())
            elif isinstance(child, NearestUpsample2x):
                setattr(parent, name, _UpsampleByCopies())
    return folded


def choose_float_groups(keep_float: Iterable[str] | None = None) -> FloatGroups:
    """`keep_float` if given, else the layer groups XNNPACK runs faster in float than in int8 on this CPU: on x86
    SLOWER_IN_INT8_ON_X86, elsewhere none."""
    if keep_float is not None:
        return FloatGroups(checked_groups(keep_float), "as asked")
    if cpu.describe().is_x86:
        return FloatGroups(SLOWER_IN_INT8_ON_X86, "this x86 CPU: XNNPACK's int8 kernels for these are slower than "
                                                  "its fp32 ones; --keep-float none for a program meant for ARM")
    return FloatGroups((), "everything int8 on this CPU")


def float_module_names(model: nn.Module, groups: Iterable[str]) -> list[str]:
    """Names of the modules of `model` in the layer `groups` (of FLOAT_GROUPS): the first convolution, the
    squeeze-excitation blocks, depthwise convolutions with kernels over 3x3, the linear layers (classifier)."""
    keep = set(checked_groups(groups))
    modules = list(model.named_modules())
    convs = [(name, m) for name, m in modules if isinstance(m, nn.Conv2d)]
    names = [convs[0][0]] if "first_conv" in keep and convs else []
    names += [name for name, m in convs if "large_depthwise" in keep and m.groups > 1
              and m.groups == m.in_channels and max(m.kernel_size) > 3]
    names += [name for name, m in modules if "se" in keep and isinstance(m, SqueezeExcitation)]
    names += [name for name, m in modules if "classifier" in keep and isinstance(m, nn.Linear)]
    return names


def _quantized(model: nn.Module, example: torch.Tensor, calibration: Iterable[np.ndarray],
               keep_float: Iterable[str]) -> nn.Module:
    """`model` with int8 weights (per channel, symmetric) and activations (per tensor) but for the layer groups
    `keep_float`, calibrated on the batches of `calibration` (fed one image at a time: the program takes batch
    1)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    in_float = [get_module_name_filter(name) for name in float_module_names(model, keep_float)]
    if in_float:
        quantizer.set_filter_function(lambda node: not any(belongs(node) for belongs in in_float))
    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), quantizer)
    with torch.no_grad():
        for batch in calibration:
            for image in torch.from_numpy(np.asarray(batch, dtype=np.float32)).split(example.shape[0]):
                prepared(image)
    return convert_pt2e(prepared)


def outside_delegate(program: Any) -> list[str]:
    """The operators an edge program runs outside its XNNPACK delegates (the graph's inputs and outputs aside)."""
    graph = program.exported_program().graph
    names = [getattr(node.target, "__name__", str(node.target)) for node in graph.nodes if node.op == "call_function"]
    return [name for name in names if name != "getitem" and _DELEGATE_CALL not in name]


def export_pte(model: nn.Module, output: str | Path, *, resolution: int = 224, metadata: dict[str, Any] | None = None,
               calibration: Iterable[np.ndarray] | None = None, keep_float: Iterable[str] | None = None) -> Path:
    """Write `model` as an ExecuTorch program for batch 1 at `resolution`, lowered to XNNPACK, to `output`
    (`.pte`), and `metadata` (class names, preprocessing, ...) beside it as `<output>.json`. With `calibration`
    (batches of preprocessed NCHW images), int8 but for the layer groups `keep_float` (default: chosen for this
    CPU, `choose_float_groups`). ValueError naming the operators XNNPACK does not take."""
    require("executorch", "executorch", "the executorch format")
    import_executorch_quietly()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    output = writable(output)
    writable(sidecar_path(output))
    example = torch.randn(1, 3, resolution, resolution)
    network = _for_xnnpack(model)
    meta = {**(metadata or {}), "input_shape": list(example.shape), "int8": calibration is not None}
    if calibration is not None:
        in_float = choose_float_groups(keep_float)
        meta["float_groups"] = {"groups": list(in_float.groups), "reason": in_float.reason, "cpu": cpu.summary()}
        network = _quantized(network, example, calibration, in_float.groups)
    with torch.no_grad():
        lowered = to_edge_transform_and_lower(torch.export.export(network, (example,)),
                                              partitioner=[XnnpackPartitioner()])
    if left := outside_delegate(lowered):
        raise ValueError(f"{output}: XNNPACK does not take {', '.join(sorted(set(left)))} "
                         f"({counted(len(left), 'operator')} would run on ExecuTorch's portable kernels)")
    program = lowered.to_executorch()
    with atomic_paths(output, sidecar_path(output)) as (program_file, sidecar):
        program_file.write_bytes(program.buffer)
        sidecar.write_text(json.dumps(meta, indent=2))
    return output
