"""Shared test helpers: small, seeded inputs and peers' models with non-trivial batch-norm statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-default statistics and affine terms, so a swapped or dropped BN tensor shows up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


@pytest.fixture
def image_batch() -> torch.Tensor:
    return torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))


def int8_weights(path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(int8 values, scale) of each weight of a QDQ ONNX model: the DequantizeLinear inputs stored as int8."""
    import onnx

    graph = onnx.load(str(path)).graph
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    return [(stored[n.input[0]], stored[n.input[1]]) for n in graph.node
            if n.op_type == "DequantizeLinear" and stored.get(n.input[0], np.zeros(0)).dtype == np.int8]
