"""Parameter and multiply-add counts, counted the way the papers' tables count them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class LayerProfile:
    """One layer with parameters: its name, output shape (batch 1), parameters and multiply-adds."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    madds: int


@dataclass
class Profile:
    """Totals for one network at one input size, and the per-layer rows they add up from."""

    params: int
    params_no_bn: int
    madds: int
    input_size: int
    layers: list[LayerProfile] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _madds(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds of one convolution or linear layer for a single image; everything else counts zero."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    return 0


@torch.no_grad()
def profile(model: nn.Module, input_size: int = 224) -> Profile:
    """Count parameters (all, and without batch-norm ones, as the published tables do) and multiply-adds of
    convolutions and linear layers (no BN, activation, pooling or residual add) for one `input_size` image."""
    rows: list[LayerProfile] = []
    hooks = []

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append(LayerProfile(name, type(module).__name__, tuple(output.shape[1:]), params,
                                     _madds(module, output)))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) or any(True for _ in module.parameters(recurse=False)):
            hooks.append(module.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, input_size, input_size))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    bn_params = sum(p.numel() for m in model.modules() if isinstance(m, _BatchNorm)
                    for p in m.parameters(recurse=False))
    return Profile(params, params - bn_params, sum(r.madds for r in rows), input_size, rows)
