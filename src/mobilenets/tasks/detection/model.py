"""CenterNet on a zoo MobileNet: backbone maps at strides 4–32, a light feature pyramid down to stride 4, three heads.

Outputs, all at stride 4: an H x W input gives ceil(H/32)*8 x ceil(W/32)*8 maps (ceil(H/16)*4 on a dilated V3,
whose largest stride is 16):
- heat-map logits [B, K, h, w], one channel per class (sigmoid gives the centre probability);
- size [B, 2, h, w]: box width and height in output-map pixels (input pixels / 4);
- offset [B, 2, h, w]: the sub-pixel part (x, y) of the centre that flooring to the output grid lost.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...models import MobileNet, build_model
from ...models.blocks import ClassifierHead
from ...models.layers import ConvNormAct, NearestUpsample2x
from ...models.mobilenet import init_weights

DETECTORS = ("centernet",)
HEAD_CONVS = ("separable", "full")  # the heads' 3x3 conv: depthwise-separable (TF2 zoo) or full (the paper)
HEATMAP_PRIOR = 0.1
HEATMAP_BIAS = -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR)  # -2.19: every class starts at probability 0.1


class TopDownMerge(nn.Module):
    """One feature-pyramid step: nearest x2 upsampling of the coarser map, plus this level's 1x1 lateral, then a
    depthwise-separable 3x3 smoothing (a full 3x3 at stride 4 would cost more than the whole backbone)."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.lateral = ConvNormAct(in_channels, channels, 1, activation_layer=None)
        self.upsample = NearestUpsample2x()
        self.smooth = nn.Sequential(ConvNormAct(channels, channels, 3, groups=channels),
                                    ConvNormAct(channels, channels, 1))

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.smooth(self.upsample(coarse) + self.lateral(skip))


class FeaturePyramid(nn.Module):
    """Top-down neck: brings the backbone maps (finest first, each twice the stride of the one before) to one
    width and merges them down to the finest stride."""

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.top = ConvNormAct(in_channels[-1], channels, 1, activation_layer=None)
        self.merges = nn.ModuleList(TopDownMerge(c, channels) for c in reversed(in_channels[:-1]))

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        x = self.top(maps[-1])
        for i, merge in enumerate(self.merges):
            x = merge(x, maps[-2 - i])
        return x


class Head(nn.Sequential):
    """One CenterNet head: 3x3 conv → ReLU → 1x1 conv, the last initialised small with a chosen bias.

    `separable=True` factors the 3x3 conv into depthwise 3x3 + pointwise 1x1 with no activation between, as the
    TF2 detection zoo's CenterNet-MobileNetV2-FPN does (`use_depthwise`): at stride 4 a full 3x3 with 64 in and
    out channels costs 0.6 G multiply-adds at 512x512, the separable one 0.08 G.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, bias: float = 0.0, *,
                 separable: bool = False) -> None:
        if separable:
            depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
            spatial = nn.Sequential(depthwise, nn.Conv2d(in_channels, hidden, 1))
        else:
            spatial = nn.Conv2d(in_channels, hidden, 3, padding=1)
        super().__init__(spatial, nn.ReLU(inplace=True), nn.Conv2d(hidden, out_channels, 1))
        self.hidden = hidden
        init_weights(spatial)
        if separable:  # no norm and no activation follow it: the linear gain over its fan-in (9), not He's sqrt(2)
            nn.init.kaiming_normal_(depthwise.weight, mode="fan_in", nonlinearity="linear")
        self.reset_output(out_channels, bias)

    def reset_output(self, out_channels: int, bias: float) -> None:
        """Replace the final 1x1 conv: weights N(0, 0.01) so the bias alone sets the starting prediction."""
        conv = nn.Conv2d(self.hidden, out_channels, 1)
        nn.init.normal_(conv.weight, 0.0, 0.01)
        nn.init.constant_(conv.bias, bias)
        self[2] = conv


class CenterNet(nn.Module):
    """CenterNet ("Objects as Points") on a MobileNet: forward returns (heat-map logits, size, offset) at stride 4.

    Inputs whose sides are not multiples of the backbone's largest stride are zero-padded on the right and bottom,
    so box coordinates need no remapping. The backbone's classifier is replaced by a parameter-free one (its
    weights would sit unused). `config` holds what `create_detector(**config)` needs to rebuild the model.
    """

    def __init__(self, backbone: MobileNet, num_classes: int, *, neck_channels: int = 64, head_channels: int = 64,
                 head_conv: str = "separable", config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.stride = 4
        levels = [f for f in backbone.feature_info if f.stride >= self.stride]
        if levels[0].stride != self.stride:
            raise ValueError(f"the backbone has no stride-{self.stride} feature map")
        backbone.head = ClassifierHead(backbone.feature_info[-1].channels, 0, None, None, 0.0)
        backbone.num_features = backbone.head.num_features
        self.backbone = backbone
        self.strides = [f.stride for f in levels]
        self.pad_multiple = self.strides[-1]
        self.num_classes = num_classes
        self.neck = FeaturePyramid([f.channels for f in levels], neck_channels)
        if head_conv not in HEAD_CONVS:
            raise ValueError(f"unknown head_conv {head_conv!r}; choose from {', '.join(HEAD_CONVS)}")
        separable = head_conv == "separable"
        self.heatmap = Head(neck_channels, head_channels, num_classes, HEATMAP_BIAS, separable=separable)
        self.size = Head(neck_channels, head_channels, 2, separable=separable)
        self.offset = Head(neck_channels, head_channels, 2, separable=separable)
        self.config = dict(config or {})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.pad_multiple
        pad_h, pad_w = (m - x.shape[-2] % m) % m, (m - x.shape[-1] % m) % m
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [0, pad_w, 0, pad_h])
        features = self.neck(self.backbone.features_at(x, self.strides))
        return self.heatmap(features), self.size(features), self.offset(features)

    def reset_classes(self, num_classes: int) -> None:
        """Re-initialise the heat-map head's output for `num_classes` classes (fine-tuning on another label set)."""
        self.heatmap.reset_output(num_classes, HEATMAP_BIAS)
        self.num_classes = num_classes
        self.config["num_classes"] = num_classes


def create_detector(name: str = "centernet", *, backbone: str = "mobilenet_v2", width_mult: float = 1.0,
                    num_classes: int = 80, neck_channels: int = 64, head_channels: int = 64,
                    head_conv: str = "separable", **backbone_options: Any) -> CenterNet:
    """Build a randomly initialised detector on a zoo backbone (`backbone_options` as in `create_model`)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    net = build_model(backbone, width_mult=width_mult, num_classes=0, **backbone_options)
    config = {"name": name, "backbone": backbone, "width_mult": width_mult, "num_classes": num_classes,
              "neck_channels": neck_channels, "head_channels": head_channels, "head_conv": head_conv,
              **backbone_options}
    return CenterNet(net, num_classes, neck_channels=neck_channels, head_channels=head_channels, head_conv=head_conv,
                     config=config)
