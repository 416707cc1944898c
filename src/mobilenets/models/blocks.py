"""The blocks of the papers: V1's depthwise separable convolution and V2/V3's inverted residual."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

from .layers import LayerFactory, resolve_activation


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 block: 3x3 depthwise conv → BN → act, then 1x1 pointwise conv → BN → act. No shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: str, layers: LayerFactory) -> None:
        super().__init__()
        self.depthwise = layers.conv(in_channels, in_channels, 3, stride, groups=in_channels, act=act)
        self.pointwise = layers.conv(in_channels, out_channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1x1 expand → k x k depthwise → [squeeze-excitation] → linear 1x1 projection.

    The expansion is skipped when it would not change the width; the identity shortcut exists only when the
    block keeps both resolution and width (stride 1, in = out): no projection shortcuts.
    SE is torchvision's SqueezeExcitation (avg-pool → 1x1 → ReLU → 1x1 → hard-sigmoid gate), the same
    arithmetic as the paper's and timm's, so it is not written again here.
    For the papers' ablations: `project_act` puts an activation after the projection (no linear bottleneck),
    `shortcut=False` drops the shortcut, `se_gate` names another gate (sigmoid).
    """

    def __init__(self, in_channels: int, expanded: int, out_channels: int, kernel: int, stride: int,
                 act: str, se_channels: int | None, layers: LayerFactory, dilation: int = 1, *,
                 project_act: str | None = None, shortcut: bool = True, se_gate: str = "hardsigmoid") -> None:
        super().__init__()
        self.stride, self.expanded = stride, expanded
        self.use_shortcut = shortcut and stride == 1 and in_channels == out_channels
        self.expand = (layers.conv(in_channels, expanded, 1, act=act)
                       if expanded != in_channels else nn.Identity())
        self.depthwise = layers.conv(expanded, expanded, kernel, stride, groups=expanded,
                                     dilation=dilation, act=act)
        self.se = (SqueezeExcitation(expanded, se_channels, scale_activation=resolve_activation(se_gate))
                   if se_channels else nn.Identity())
        self.project = layers.conv(expanded, out_channels, 1, act=project_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.use_shortcut else out


class ExpansionResidual(nn.Module):
    """The V2 paper's alternative shortcut (Figure 6b): between the expansions (the wide tensors) of consecutive
    blocks instead of their bottlenecks. It holds one block's depthwise → [SE] → projection and the next
    block's expansion, so its input and output are both wide; the shortcut exists where their shapes agree."""

    def __init__(self, block: InvertedResidual, following: InvertedResidual | None) -> None:
        super().__init__()
        self.depthwise, self.se, self.project = block.depthwise, block.se, block.project
        self.expand = following.expand if following is not None else nn.Identity()
        self.use_shortcut = (following is not None and block.stride == 1
                             and block.expanded == following.expanded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.project(self.se(self.depthwise(x))))
        return x + out if self.use_shortcut else out


class ClassifierHead(nn.Module):
    """Global average pool → [hidden linear + act (V3)] → dropout → linear to classes.

    Adaptive pooling makes every input resolution work (the seed code's fixed AvgPool2d(7) did not).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int | None, act: nn.Module | None,
                 dropout: float) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden), act) if hidden else nn.Identity()
        self.num_features = hidden or in_features
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.hidden(self.flatten(self.pool(x)))))
