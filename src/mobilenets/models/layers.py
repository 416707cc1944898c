"""Small building blocks shared by every MobileNet: channel rounding, padding, conv-norm-activation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import ConvNormActivation

ModuleFactory = Callable[..., nn.Module]

ACTIVATIONS: dict[str, ModuleFactory] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never below `min_value` (default: divisor)
    and never more than 10% below `value`: the rule of the authors' release, torchvision and timm."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def resolve_activation(act: str | ModuleFactory) -> ModuleFactory:
    """Accept an activation as a name ('relu6', 'hardswish', ...) or as a module class."""
    if isinstance(act, str):
        try:
            return ACTIVATIONS[act]
        except KeyError:
            raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}") from None
    return act


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding, computed from the input size at run time.

    TensorFlow pads stride-2 convolutions asymmetrically (more on the bottom/right); weights trained that way
    (timm's `tf_*` ports) give different outputs under PyTorch's symmetric padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        pad_w = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total padding TensorFlow's "SAME" adds along one axis."""
    out = math.ceil(size / stride)
    return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


# activations that can overwrite their input: saves a tensor's worth of memory traffic per layer
_INPLACE = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU)


class ConvNormAct(ConvNormActivation):
    """torchvision's convolution → norm → activation block (children `0`, `1`, `2`), with a choice of conv layer.

    Reusing torchvision's block keeps its names, so torchvision's MobileNet checkpoints map onto ours by
    renaming whole blocks, never single layers.
    """


class NearestUpsample2x(nn.Module):
    """Nearest-neighbour upsampling by 2, as a module of its own so that an exporter can swap in the form its
    backend runs fast (XNNPACK has no nearest resize: `deploy.executorch` writes it as copies)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


@dataclass(frozen=True)
class LayerFactory:
    """How convolutions, normalisation and activations are made; passed explicitly to every block.

    `act_override` replaces every activation named in the architecture tables (e.g. ReLU6 everywhere for
    accelerators without hard-swish); `tf_padding` selects TensorFlow "SAME" padding for strided convs.
    """

    norm_layer: ModuleFactory
    act_override: ModuleFactory | None = None
    tf_padding: bool = False

    def activation(self, name: str) -> ModuleFactory:
        return self.act_override if self.act_override is not None else resolve_activation(name)

    def conv(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
             dilation: int = 1, act: str | None = None) -> ConvNormAct:
        """Convolution → norm → activation (no activation when `act` is None: a linear projection)."""
        conv_layer = Conv2dSame if self.tf_padding and stride > 1 else nn.Conv2d
        activation = None if act is None else self.activation(act)
        return ConvNormAct(
            in_channels, out_channels, kernel, stride, groups=groups, dilation=dilation,
            norm_layer=self.norm_layer, activation_layer=activation, conv_layer=conv_layer,
            inplace=True if activation in _INPLACE else None,
        )
