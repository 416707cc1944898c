"""The architectures as data: one row per layer (V1, V3) or per repeated stage (V2), as in the papers' tables.

Widths are the α = 1 values; the builder scales them. Facts and the places where the papers and the authors'
released checkpoints differ are in docs/models.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Conv:
    """Plain convolution → BN → activation (stems, V1's standard-conv variant, the last 1x1 conv)."""

    kernel: int
    out: int
    stride: int
    act: str
    keep_width: bool = False  # width never shrinks below α = 1 (V2's 1280-wide last conv)


@dataclass(frozen=True)
class Separable:
    """MobileNetV1 depthwise separable layer: 3x3 depthwise + 1x1 pointwise, both with BN and activation."""

    out: int
    stride: int
    act: str = "relu6"


@dataclass(frozen=True)
class Bottleneck:
    """MobileNetV2 stage (t, c, n, s): n inverted residuals, expansion t times the *input* width."""

    t: int
    c: int
    n: int
    s: int
    act: str = "relu6"
    project_act: str | None = None  # None: the linear bottleneck of the paper


@dataclass(frozen=True)
class Bneck:
    """MobileNetV3 bneck row: kernel, expansion width, output width, SE, nonlinearity, stride."""

    kernel: int
    exp: int
    out: int
    se: bool
    act: str
    stride: int
    dilation: int = 1
    project_act: str | None = None  # None: the linear bottleneck of the paper


Row = Conv | Separable | Bottleneck | Bneck


@dataclass(frozen=True)
class Architecture:
    """A whole network: its rows, and the classifier head after global pooling."""

    rows: tuple[Row, ...]
    head_hidden: int | None = None  # V3's 1x1 conv without BN after pooling (1280 / 1024); never shrinks
    head_act: str = "hardswish"
    dropout: float = 0.2
    shortcut: str = "bottleneck"  # which tensors the identity shortcuts join: one of SHORTCUTS
    se_ratio: float = 0.25  # squeeze width / expanded width
    se_gate: str = "hardsigmoid"  # the squeeze-excitation's gate


SHORTCUTS = ("bottleneck", "expansion", "none")  # V2 paper, Figure 6b


RE, HS = "relu", "hardswish"

MOBILENET_V1 = Architecture(
    rows=(
        Conv(3, 32, 2, "relu6"),
        Separable(64, 1),
        Separable(128, 2),
        Separable(128, 1),
        Separable(256, 2),
        Separable(256, 1),
        Separable(512, 2),
        *[Separable(512, 1)] * 5,
        Separable(1024, 2),
        Separable(1024, 1),  # the paper's table prints s2 here: a typo, the reference code uses 1
    ),
    dropout=0.0,  # the reference code keeps 0.999 of activations
)

MOBILENET_V2 = Architecture(
    rows=(
        Conv(3, 32, 2, "relu6"),
        #          t,   c, n, s
        Bottleneck(1, 16, 1, 1),
        Bottleneck(6, 24, 2, 2),
        Bottleneck(6, 32, 3, 2),
        Bottleneck(6, 64, 4, 2),
        Bottleneck(6, 96, 3, 1),
        Bottleneck(6, 160, 3, 2),
        Bottleneck(6, 320, 1, 1),
        Conv(1, 1280, 1, "relu6", keep_width=True),
    ),
)

MOBILENET_V3_LARGE = Architecture(
    rows=(
        Conv(3, 16, 2, HS),
        #     k, exp, out,  SE,   NL, s
        Bneck(3, 16, 16, False, RE, 1),
        Bneck(3, 64, 24, False, RE, 2),
        Bneck(3, 72, 24, False, RE, 1),
        Bneck(5, 72, 40, True, RE, 2),
        Bneck(5, 120, 40, True, RE, 1),
        Bneck(5, 120, 40, True, RE, 1),
        Bneck(3, 240, 80, False, HS, 2),
        Bneck(3, 200, 80, False, HS, 1),
        Bneck(3, 184, 80, False, HS, 1),
        Bneck(3, 184, 80, False, HS, 1),
        Bneck(3, 480, 112, True, HS, 1),
        Bneck(3, 672, 112, True, HS, 1),
        Bneck(5, 672, 160, True, HS, 2),
        Bneck(5, 960, 160, True, HS, 1),
        Bneck(5, 960, 160, True, HS, 1),
        Conv(1, 960, 1, HS),
    ),
    head_hidden=1280,
)

MOBILENET_V3_SMALL = Architecture(
    rows=(
        Conv(3, 16, 2, HS),
        #     k, exp, out,  SE,   NL, s
        Bneck(3, 16, 16, True, RE, 2),
        Bneck(3, 72, 24, False, RE, 2),
        Bneck(3, 88, 24, False, RE, 1),
        Bneck(5, 96, 40, True, HS, 2),
        Bneck(5, 240, 40, True, HS, 1),
        Bneck(5, 240, 40, True, HS, 1),
        Bneck(5, 120, 48, True, HS, 1),
        Bneck(5, 144, 48, True, HS, 1),
        Bneck(5, 288, 96, True, HS, 2),
        Bneck(5, 576, 96, True, HS, 1),
        Bneck(5, 576, 96, True, HS, 1),
        Conv(1, 576, 1, HS),  # the paper marks SE here; the released models have none
    ),
    head_hidden=1024,
)


def standard_convolutions(arch: Architecture) -> Architecture:
    """V1 built from full 3x3 convolutions instead of depthwise separable ones (the paper's Table 4 baseline)."""
    rows = tuple(Conv(3, r.out, r.stride, r.act) if isinstance(r, Separable) else r for r in arch.rows)
    return dataclasses.replace(arch, rows=rows)


def minimalistic(arch: Architecture) -> Architecture:
    """V3 "minimalistic": no SE, no hard-swish (ReLU everywhere), every depthwise kernel 3x3."""
    def simplify(row: Row) -> Row:
        if isinstance(row, Bneck):
            return dataclasses.replace(row, kernel=3, se=False, act=RE)
        return dataclasses.replace(row, act=RE)
    return dataclasses.replace(arch, rows=tuple(simplify(r) for r in arch.rows), head_act=RE)


def _last_stage_start(arch: Architecture) -> int:
    return max(i for i, row in enumerate(arch.rows) if isinstance(row, Bneck) and row.stride == 2)


def reduced_tail(arch: Architecture) -> Architecture:
    """Halve the last stage's widths (V3 paper, section 6.4; the authors' segmentation/detection backbones).

    Expansion widths are a multiple of a block's input, so the first block of the stage, whose input is not
    halved, keeps its expansion width (as the release and torchvision do).
    """
    start = _last_stage_start(arch)
    rows = list(arch.rows)
    for i in range(start, len(rows)):
        row = rows[i]
        if isinstance(row, Bneck):
            rows[i] = dataclasses.replace(row, out=row.out // 2, exp=row.exp if i == start else row.exp // 2)
        else:
            rows[i] = dataclasses.replace(row, out=row.out // 2)
    return dataclasses.replace(arch, rows=tuple(rows))


def dilated(arch: Architecture) -> Architecture:
    """Replace the last stride-2 by dilation 2 in the last stage: output stride 16 for dense prediction."""
    start = _last_stage_start(arch)
    rows = [dataclasses.replace(row, stride=1, dilation=2) if i >= start and isinstance(row, Bneck) else row
            for i, row in enumerate(arch.rows)]
    return dataclasses.replace(arch, rows=tuple(rows))


def nonlinear_bottlenecks(arch: Architecture) -> Architecture:
    """The block's activation after the projection too: no linear bottleneck (the V2 paper's Figure 6a)."""
    rows = tuple(dataclasses.replace(r, project_act=r.act) if isinstance(r, Bottleneck | Bneck) else r
                 for r in arch.rows)
    return dataclasses.replace(arch, rows=rows)


def without_se(arch: Architecture) -> Architecture:
    """V3 without squeeze-excitation."""
    return dataclasses.replace(arch, rows=tuple(dataclasses.replace(r, se=False) if isinstance(r, Bneck) else r
                                                for r in arch.rows))


def hardswish_from(arch: Architecture, width: int) -> Architecture:
    """ReLU before the first layer whose width (at α = 1) is `width`, hard-swish from it on: the V3 paper's
    "h-swish @N" placement study (@16 on V3-Large: everywhere, the stem included)."""
    widths = [r.out for r in arch.rows]
    if width not in widths:
        raise ValueError(f"hardswish_from: no layer is {width} wide; choose from {sorted(set(widths))}")
    start = widths.index(width)
    rows = tuple(dataclasses.replace(r, act=HS if i >= start else RE) for i, r in enumerate(arch.rows))
    return dataclasses.replace(arch, rows=rows)


def swish(arch: Architecture) -> Architecture:
    """Swish (x * sigmoid(x)) wherever the table has hard-swish: the function hard-swish approximates."""
    rows = tuple(dataclasses.replace(r, act="silu") if r.act == HS else r for r in arch.rows)
    return dataclasses.replace(arch, rows=rows, head_act="silu" if arch.head_act == HS else arch.head_act)
