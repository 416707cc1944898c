"""The one builder that turns any architecture table into a network, and the network it builds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .blocks import ClassifierHead, DepthwiseSeparable, ExpansionResidual, InvertedResidual
from .layers import LayerFactory, make_divisible
from .specs import Architecture, Bneck, Bottleneck, Conv, Row, Separable


@dataclass(frozen=True)
class FeatureInfo:
    """One feature level a dense-prediction head can tap: its stride, width, and the `features` index."""

    stride: int
    channels: int
    index: int


class MobileNet(nn.Module):
    """A MobileNet: `features` (stem, blocks, last 1x1 conv) then `head` (pool, [hidden], dropout, fc).

    `feature_info` lists, for every output stride (2, 4, 8, 16, 32), the last layer at that stride and its
    width, known before any forward pass; `features_at` returns those maps for detection/segmentation.
    """

    __jit_unused_properties__ = ["num_classes"]  # noqa: RUF012 (TorchScript reads it from the class)

    def __init__(self, features: nn.Sequential, head: ClassifierHead, feature_info: list[FeatureInfo],
                 config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.feature_info = feature_info
        self.num_features = head.num_features
        self.config = dict(config or {})
        self._tap_index = {f.stride: f.index for f in feature_info}
        self._strides = ", ".join(str(f.stride) for f in feature_info)  # for errors, in TorchScript too
        self._dense_strides = [f.stride for f in feature_info if f.stride >= 4]

    @property
    def num_classes(self) -> int:
        return self.head.fc.out_features if isinstance(self.head.fc, nn.Linear) else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.jit.export
    def features_at(self, x: torch.Tensor, strides: list[int] | None = None) -> list[torch.Tensor]:
        """Feature maps at the given output strides (default: 4, 8, 16 and, unless dilated, 32), in that order."""
        if strides is None:
            strides = self._dense_strides
        wanted: list[int] = []
        for s in strides:
            if s not in self._tap_index:
                raise ValueError(f"no feature map at stride {s}; available: {self._strides}")
            wanted.append(self._tap_index[s])
        found: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                found[i] = x
        return [found[i] for i in wanted]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer with a freshly initialised one for `num_classes` (0: no classifier)."""
        fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(fc)
        self.head.fc = fc
        self.config["num_classes"] = num_classes


def init_weights(module: nn.Module) -> None:
    """He-normal convs over the fan-out of one group (as TensorFlow's MnasNet/EfficientNet code and timm do),
    unit/zero norms, N(0, 0.01) linear.

    torchvision counts a depthwise kernel's fan-out over all its channels (C*k*k, not k*k), which makes those
    kernels sqrt(C) times too small: an adaptive optimiser's fixed-size steps then change them by a large part
    of their size per step, and training turns chaotic (docs/benchmarks.md, "The default run over seeds").
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _row_layers(row: Row, in_channels: int, base_in: int, width_mult: float, layers: LayerFactory,
                arch: Architecture) -> list[nn.Module]:
    """The modules of one table row at width multiplier `width_mult`; every width goes through make_divisible.

    `base_in` is the row's input width at α = 1. A V3 expansion width is a multiple of the block's input
    (exp / base_in), as in the authors' release and timm; torchvision instead scales exp by α directly, which
    agrees at α = 1 only (it publishes no α ≠ 1 weights).
    """
    if isinstance(row, Conv):
        scale = max(1.0, width_mult) if row.keep_width else width_mult
        out = make_divisible(row.out * scale)
        return [layers.conv(in_channels, out, row.kernel, row.stride, act=row.act)]
    if isinstance(row, Separable):
        return [DepthwiseSeparable(in_channels, make_divisible(row.out * width_mult), row.stride, row.act, layers)]
    shortcut = arch.shortcut == "bottleneck"
    if isinstance(row, Bottleneck):
        out, blocks = make_divisible(row.c * width_mult), []
        for i in range(row.n):
            blocks.append(InvertedResidual(in_channels, round(in_channels * row.t), out, 3,
                                           row.s if i == 0 else 1, row.act, None, layers,
                                           project_act=row.project_act, shortcut=shortcut))
            in_channels = out
        return blocks
    if isinstance(row, Bneck):
        expanded = make_divisible(in_channels * row.exp / base_in)
        se_channels = make_divisible(expanded * arch.se_ratio) if row.se else None
        return [InvertedResidual(in_channels, expanded, make_divisible(row.out * width_mult), row.kernel,
                                 row.stride, row.act, se_channels, layers, dilation=row.dilation,
                                 project_act=row.project_act, shortcut=shortcut, se_gate=arch.se_gate)]
    raise TypeError(f"unknown row type {type(row).__name__}")


def _expansion_shortcuts(modules: list[nn.Module]) -> list[nn.Module]:
    """The same layers regrouped so that the shortcuts join the blocks' expansions: the first block's expansion
    on its own, then one ExpansionResidual per block (see there)."""
    blocks = [i for i, m in enumerate(modules) if isinstance(m, InvertedResidual)]
    first, last = blocks[0], blocks[-1]
    if blocks != list(range(first, last + 1)):
        raise ValueError("expansion shortcuts need the inverted residuals in one run")
    chain = [modules[i] for i in blocks]
    regrouped = [ExpansionResidual(block, following)
                 for block, following in zip(chain, [*chain[1:], None], strict=True)]
    lead = [chain[0].expand] if not isinstance(chain[0].expand, nn.Identity) else []
    return [*modules[:first], *lead, *regrouped, *modules[last + 1:]]


def _out_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def _stride(module: nn.Module) -> int:
    stride = 1
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            stride *= m.stride[0]
    return stride


def build_mobilenet(arch: Architecture, *, width_mult: float, num_classes: int, dropout: float | None,
                    layers: LayerFactory, config: dict[str, Any] | None = None) -> MobileNet:
    """Turn an architecture table into a MobileNet, recording each output stride's last layer as it goes."""
    built: list[nn.Module] = []
    in_channels, base_in = 3, 3
    for row in arch.rows:
        for module in _row_layers(row, in_channels, base_in, width_mult, layers, arch):
            in_channels = _out_channels(module)
            built.append(module)
        base_in = row.c if isinstance(row, Bottleneck) else row.out
    if arch.shortcut == "expansion":
        built = _expansion_shortcuts(built)
    modules: list[nn.Module] = []
    info: dict[int, FeatureInfo] = {}
    stride = 1
    for module in built:
        stride *= _stride(module)
        info[stride] = FeatureInfo(stride, _out_channels(module), len(modules))
        modules.append(module)
    hidden = make_divisible(arch.head_hidden * max(1.0, width_mult)) if arch.head_hidden else None
    act = layers.activation(arch.head_act)() if hidden else None
    head = ClassifierHead(in_channels, num_classes, hidden, act, arch.dropout if dropout is None else dropout)
    model = MobileNet(nn.Sequential(*modules), head, sorted(info.values(), key=lambda f: f.stride), config)
    init_weights(model)
    return model

