"""Quantization-aware fine-tuning: a few epochs with int8 rounding simulated, so that the int8 model onnxruntime's
post-training quantization (`quantize`) makes from the result keeps the fp32 model's predictions.

The simulation matches what `quantize` does: batch norm folded into the convolutions first, per-output-channel
symmetric weights on the same 7- or 8-bit grid (`choose_weight_range`: chosen for this CPU unless `reduce_range`
is given), uint8 per-tensor inputs to every convolution and linear layer with min/max ranges. torch's
fake-quantization operators do the rounding (with straight-through gradients); the deployed model is still
quantized by onnxruntime's tooling.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver
from torch.nn.utils import parametrize

from ..engine.loop import train_one_epoch
from .export import fold_batchnorm
from .quantize import choose_weight_range

QUANTIZED = (nn.Conv2d, nn.Linear)


class SymmetricWeightGrid(nn.Module):
    """Weight parametrization: each output channel rounded to `levels` steps of max |w| / levels either side of 0,
    the grid onnxruntime's per-channel symmetric int8 weights use (levels 64 with reduce_range, else 127)."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = weight.detach().abs().amax(dim=tuple(range(1, weight.dim()))).clamp_min(1e-12) / self.levels
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -self.levels, self.levels)


def _quantize_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_quant(args[0]), *args[1:])


def prepare_for_int8(model: nn.Module, *, reduce_range: bool | None = None) -> nn.Module:
    """A batch-norm-folded copy of `model` without dropout, with fake-quantized weights (on the grid
    `choose_weight_range(reduce_range)` picks, as `quantize` does) and layer inputs, ready to fine-tune."""
    if any(hasattr(module, "input_quant_hook") for module in model.modules()):
        raise ValueError("this model is already prepared for int8 training")
    levels = 64 if choose_weight_range(reduce_range).reduce_range else 127
    model = fold_batchnorm(model)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0  # settling weights onto the grid needs no regularisation; export drops it anyway
        if isinstance(module, QUANTIZED):
            parametrize.register_parametrization(module, "weight", SymmetricWeightGrid(levels))
            module.input_quant = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                              dtype=torch.quint8, qscheme=torch.per_tensor_affine)
            module.input_quant_hook = module.register_forward_pre_hook(_quantize_input)
    return model


def finish_int8_training(model: nn.Module) -> nn.Module:
    """Remove the simulation from a model `prepare_for_int8` made, in place: its weights stay on the int8 grid
    (so `quantize` reproduces them exactly) and its layer inputs go back to float; returns it in eval mode."""
    for module in model.modules():
        if isinstance(module, QUANTIZED) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            module.input_quant_hook.remove()  # only ours: hooks the caller registered stay
            del module.input_quant, module.input_quant_hook
    return model.eval()


def finetune_for_int8(model: nn.Module, loader: Iterable, *, epochs: int = 2, lr: float = 1e-3,
                      observe_steps: int = 100, reduce_range: bool | None = None, progress: bool = True
                      ) -> nn.Module:
    """Fine-tune a trained classifier for `epochs` with int8 simulated (SGD, cosine from `lr`); returns the new
    batch-norm-folded float model. Activation ranges are observed for `observe_steps` steps, then frozen so
    the weights settle on fixed grids."""
    model = prepare_for_int8(model, reduce_range=reduce_range)
    steps = epochs * len(loader)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    taken = 0

    def after_step() -> None:
        nonlocal taken
        taken += 1
        if taken == min(observe_steps, math.ceil(steps / 2)):
            model.apply(torch.ao.quantization.disable_observer)

    for epoch in range(epochs):
        train_one_epoch(model, loader, optimizer, scheduler, nn.CrossEntropyLoss(), torch.device("cpu"), epoch=epoch,
                        channels_last=False, after_step=after_step, progress=progress,
                        description=f"int8-aware fine-tuning {epoch + 1}/{epochs}")
    return finish_int8_training(model)
