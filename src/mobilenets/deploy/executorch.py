"""ExecuTorch programs (`.pte`) for phones and small CPUs: the network lowered whole to XNNPACK (the kernel library
TFLite uses on phones), in fp32 or int8 through PyTorch's PT2E quantization, with its metadata in a sidecar JSON so
that an app needs nothing else.

The flow is ExecuTorch's own: torch.export -> (int8: XNNPACKQuantizer, per-channel symmetric weights, calibrated
with torchao's prepare_pt2e/convert_pt2e) -> to_edge_transform_and_lower with the XNNPACK partitioner ->
to_executorch. Every operator must run inside the delegate: one left outside runs on ExecuTorch's slow portable
kernels, so it is refused, named.
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

from .._atomic import atomic_path, write_text
from ..extras import require
from ..models.layers import NearestUpsample2x
from .export import fold_batchnorm
from .runtime import import_executorch_quietly, sidecar_path

_DELEGATE_CALL = "executorch_call_delegate"


class _DelegableHardsigmoid(nn.Module):
    """hardsigmoid as relu6(x + 3) / 6 with float constants: the edge dialect decomposes nn.Hardsigmoid with int64
    constants whose casts XNNPACK does not take, leaving them outside the delegate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


def _for_xnnpack(model: nn.Module) -> nn.Module:
    """A batch-norm-folded eval copy of `model` whose every operator XNNPACK takes: hard-sigmoid with float
    constants, nearest upsampling as the transposed convolution it equals (XNNPACK has no nearest resize)."""
    folded = fold_batchnorm(model)
    for parent in list(folded.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Hardsigmoid):
                setattr(parent, name, _DelegableHardsigmoid())
            elif isinstance(child, NearestUpsample2x):
                setattr(parent, name, child.as_convolution())
    return folded


def _quantized(model: nn.Module, example: torch.Tensor, calibration: Iterable[np.ndarray]) -> nn.Module:
    """`model` with int8 weights (per channel, symmetric) and activations (per tensor), calibrated on the
    batches of `calibration` (fed one image at a time: the program takes batch 1)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
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
               calibration: Iterable[np.ndarray] | None = None) -> Path:
    """Write `model` as an ExecuTorch program for batch 1 at `resolution`, lowered to XNNPACK, to `output`
    (`.pte`), and `metadata` (class names, preprocessing, ...) beside it as `<output>.json`. With `calibration`
    (batches of preprocessed NCHW images), int8. ValueError naming the operators XNNPACK does not take."""
    require("executorch", "executorch", "the executorch format")
    import_executorch_quietly()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    output = Path(output)
    example = torch.randn(1, 3, resolution, resolution)
    network = _for_xnnpack(model)
    if calibration is not None:
        network = _quantized(network, example, calibration)
    with torch.no_grad():
        lowered = to_edge_transform_and_lower(torch.export.export(network, (example,)),
                                              partitioner=[XnnpackPartitioner()])
    if left := outside_delegate(lowered):
        raise ValueError(f"{output}: XNNPACK does not take {', '.join(sorted(set(left)))} ({len(left)} operator"
                         f"{'s' if len(left) != 1 else ''} would run on ExecuTorch's portable kernels)")
    program = lowered.to_executorch()
    with atomic_path(output) as tmp:
        tmp.write_bytes(program.buffer)
    meta = {**(metadata or {}), "input_shape": list(example.shape), "int8": calibration is not None}
    write_text(sidecar_path(output), json.dumps(meta, indent=2))
    return output
