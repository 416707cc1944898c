"""The published MobileNet cost tables as printed, the figures we knowingly do not match, and peer libraries' counts.

Data shared by tests/test_published_costs.py (which checks every figure) and benchmarks/models_table.py (which
renders docs/models.md), plus the rule both apply (`agrees`) and a cached way to count our networks.

How the publications count: 1001 classes (TF-slim's extra background class); multiply-adds (MAdds) of
convolutions and fully connected layers only, for one image; figures printed in millions and rounded
inconsistently (568.7M printed 569, but 300.8M printed 300). So a printed figure agrees when it is our exact
count rounded down or up to its printed digits: |ours − printed| < one unit of its last digit.
Which parameter count a table prints (all, or without batch-norm parameters) is a property of the table (`Table`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import torchvision

from .models import MobileNet, build_model
from .profile import Profile, profile

PUBLISHED_CLASSES = 1001  # TF-slim's 1000 ImageNet classes plus "background"
PEER_CLASSES = 1000  # torchvision and timm
Quantity = Literal["madds", "params"]
Options = tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class Table:
    """A publication's cost table: a short name, where it is, and which parameter count its params column prints."""

    name: str
    citation: str
    params_without_bn: bool = False


_SLIM = "TF-slim release notes, github.com/tensorflow/models, research/slim/nets/"
TABLES: dict[str, Table] = {
    "v1-paper": Table("V1 paper", "Howard et al., MobileNets, arXiv:1704.04861"),
    "v1-release": Table("V1 release", _SLIM + "mobilenet_v1.md, pre-trained models (2018-02-22)"),
    "v2-release": Table("V2 release", _SLIM + "mobilenet/README.md, V2 checkpoints", params_without_bn=True),
    "v3-paper": Table("V3 paper", "Howard et al., Searching for MobileNetV3, arXiv:1905.02244"),
    "v3-release": Table("V3 release", _SLIM + "mobilenet/README.md, V3 checkpoints"),
}


@functools.lru_cache(maxsize=4)
def _build(model: str, width: float, options: Options, num_classes: int) -> MobileNet:
    return build_model(model, width_mult=width, num_classes=num_classes, **dict(options))


@functools.cache
def our_profile(model: str, width: float, options: Options, resolution: int,
                num_classes: int = PUBLISHED_CLASSES) -> Profile:
    """`mobilenets.profile` of one of our networks, cached: the tables ask for the same network repeatedly."""
    return profile(_build(model, width, options, num_classes), resolution)


def agrees(count: int, printed: str, unit: int = 10**6) -> bool:
    """Whether `printed` (in `unit`s, e.g. "4.2" million) is `count` rounded down or up to its printed digits."""
    decimals = len(printed.partition(".")[2])
    return abs(Decimal(count) / unit - Decimal(printed)) < Decimal(1).scaleb(-decimals)


def _params(p: Profile, without_bn: bool) -> int:
    return p.params_no_bn if without_bn else p.params


def network_label(model: str, width: float, options: Options = (), resolution: int | None = None) -> str:
    """Short human name, e.g. "mobilenet_v1 α=0.75 192px separable=False"."""
    parts = [model, f"α={width:g}"]
    if resolution is not None:
        parts.append(f"{resolution}px")
    parts += [f"{k}={v}" for k, v in options]
    return " ".join(parts)


@dataclass(frozen=True)
class PublishedRow:
    """One printed line of a cost table: the network it describes and its figures in millions, as printed."""

    table: str  # key of TABLES
    model: str
    width: float
    resolution: int
    madds: str | None
    params: str | None
    options: Options = ()
    where: str = ""  # which table inside the publication, where it has several
    madds_without_classifier: bool = False  # the figure leaves out the final classifier (V1 Table 4)
    note: str = ""

    @property
    def source(self) -> str:
        return ", ".join(filter(None, (TABLES[self.table].name, self.where)))

    @property
    def label(self) -> str:
        return network_label(self.model, self.width, self.options, self.resolution)

    def profile(self) -> Profile:
        """Our network at this row's width, options and resolution, with the publications' 1001 classes."""
        return our_profile(self.model, self.width, self.options, self.resolution)

    def ours(self, quantity: Quantity) -> int:
        """Our exact count of `quantity`, counted the way this row's table counts it."""
        p = self.profile()
        if quantity == "params":
            return _params(p, TABLES[self.table].params_without_bn)
        if self.madds_without_classifier:
            return p.madds - next(layer.madds for layer in p.layers if layer.name == "head.fc")
        return p.madds

    def agrees(self, quantity: Quantity) -> bool:
        printed = getattr(self, quantity)
        return printed is None or agrees(self.ours(quantity), printed)


V1, V2, V3L, V3S = "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"
MINIMAL: Options = (("minimal", True),)

PUBLISHED: tuple[PublishedRow, ...] = (
    # MobileNetV1 paper: Table 6 (width multiplier), Table 7 (resolution), Table 4 (standard convolutions).
    PublishedRow("v1-paper", V1, 1.0, 224, "569", "4.2", where="Table 6"),
    PublishedRow("v1-paper", V1, 0.75, 224, "325", "2.6", where="Table 6"),
    PublishedRow("v1-paper", V1, 0.5, 224, "149", "1.3", where="Table 6"),
    PublishedRow("v1-paper", V1, 0.25, 224, "41", "0.5", where="Table 6"),
    PublishedRow("v1-paper", V1, 1.0, 192, "418", "4.2", where="Table 7"),
    PublishedRow("v1-paper", V1, 1.0, 160, "290", "4.2", where="Table 7"),
    PublishedRow("v1-paper", V1, 1.0, 128, "186", "4.2", where="Table 7"),
    PublishedRow("v1-paper", V1, 1.0, 224, "4866", "29.3", options=(("separable", False),), where="Table 4",
                 madds_without_classifier=True,
                 note="The paper's 4866M leaves out the final 1024→classes classifier; counting it, the figure "
                      "would be 4867M."),
    # MobileNetV1 release (checkpoints 2018-02-22); its α = 0.75 rows and 0.25@192 are in KNOWN_DISAGREEMENTS.
    *(PublishedRow("v1-release", V1, 1.0, r, m, "4.24")
      for r, m in ((224, "569"), (192, "418"), (160, "291"), (128, "186"))),
    *(PublishedRow("v1-release", V1, 0.5, r, m, "1.34")
      for r, m in ((224, "150"), (192, "110"), (160, "77"), (128, "49"))),
    *(PublishedRow("v1-release", V1, 0.25, r, m, "0.47")
      for r, m in ((224, "41"), (160, "21"), (128, "14"))),
    # MobileNetV2 release table: parameters without batch norm (the all-parameter count misses 6.06, 5.34, 3.47).
    PublishedRow("v2-release", V2, 1.4, 224, "582", "6.06"),
    PublishedRow("v2-release", V2, 1.3, 224, "509", "5.34"),
    *(PublishedRow("v2-release", V2, w, r, m, params)
      for w, params, figures in (
          (1.0, "3.47", ("300", "221", "154", "99", "56")),
          (0.75, "2.61", ("209", "153", "107", "69", "39")),
          (0.5, "1.95", ("97", "71", "50", "32", "18")),
          (0.35, "1.66", ("59", "43", "30", "20", "11")),
      )
      for r, m in zip((224, 192, 160, 128, 96), figures, strict=True)),
    # MobileNetV3 (224 px). Large 1.0 from the release (the paper's 219M is in KNOWN_DISAGREEMENTS).
    PublishedRow("v3-release", V3L, 1.0, 224, "217", "5.4"),
    PublishedRow("v3-paper", V3L, 0.75, 224, "155", "4.0", where="Table 3 (the V3 release prints the same)"),
    PublishedRow("v3-paper", V3S, 1.0, 224, "56", "2.5", where="Table 3"),
    PublishedRow("v3-paper", V3S, 0.75, 224, "44", "2.0", where="Table 3"),
    PublishedRow("v3-paper", V3L, 1.0, 224, "209", "3.9", options=MINIMAL,
                 where="Table 3 (the V3 release prints the same)"),
    PublishedRow("v3-release", V3S, 1.0, 224, None, "2.0", options=MINIMAL, where="minimalistic checkpoints",
                 note="Its 65M MAdds are in KNOWN_DISAGREEMENTS."),
)


def params_fit(table: str, without_bn: bool) -> bool:
    """Whether one parameter count (all, or without batch norm) agrees with every params figure of `table`."""
    rows = [row for row in PUBLISHED if row.table == table and row.params is not None]
    return all(agrees(_params(row.profile(), without_bn), row.params) for row in rows)


@dataclass(frozen=True)
class Alternative:
    """What our count equals instead of a disputed figure: another printed figure, or a timm model's exact count."""

    source: str
    madds: str | None = None  # printed, in `unit`s
    params: str | None = None
    unit: int = 10**6
    timm: str | None = None  # a timm model whose count (at PUBLISHED_CLASSES classes) equals ours exactly


@dataclass(frozen=True)
class KnownDisagreement:
    """A printed line whose `disputed` figures we deliberately do not match: the publication disagrees with
    its own checkpoints or with its other tables. Its other printed figures agree with ours."""

    row: PublishedRow
    disputed: tuple[Quantity, ...]
    alternatives: tuple[Alternative, ...]
    note: str


_PAPER_V3 = "V3 paper, Table 3"

KNOWN_DISAGREEMENTS: tuple[KnownDisagreement, ...] = (
    KnownDisagreement(
        PublishedRow("v3-paper", V3L, 1.0, 224, "219", "5.4", where="Table 3"), ("madds",),
        (Alternative("V3 release", madds="217"),
         Alternative("torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1 `_ops` (GFLOPs)", madds="0.217",
                     unit=10**9),
         Alternative("timm tf_mobilenetv3_large_100 (port of the release checkpoint)",
                     timm="tf_mobilenetv3_large_100")),
        "The paper prints 219M; the release table prints 217M for the same network, and torchvision and timm's "
        "port of the checkpoint count what we count."),
    KnownDisagreement(
        PublishedRow("v3-release", V3S, 1.0, 224, "66", "2.9"), ("madds", "params"),
        (Alternative(_PAPER_V3, madds="56", params="2.5"),
         Alternative("timm tf_mobilenetv3_small_100 (port of the release checkpoint)",
                     timm="tf_mobilenetv3_small_100")),
        "The release table's V3-Small line matches neither the paper nor its own checkpoint, whose port in timm "
        "counts exactly what we count."),
    KnownDisagreement(
        PublishedRow("v3-release", V3S, 0.75, 224, "44", "2.4"), ("params",),
        (Alternative(_PAPER_V3, params="2.0"),
         Alternative("timm tf_mobilenetv3_small_075 (port of the release checkpoint)",
                     timm="tf_mobilenetv3_small_075")),
        "The release table prints 2.4M parameters for V3-Small 0.75; the paper prints 2.0M, and timm's port of "
        "the checkpoint counts exactly what we count. Its 44M MAdds agree."),
    KnownDisagreement(
        PublishedRow("v3-release", V3S, 1.0, 224, "65", "2.0", MINIMAL, where="minimalistic checkpoints"),
        ("madds",),
        (Alternative("timm tf_mobilenetv3_small_minimal_100 (port of the release checkpoint)",
                     timm="tf_mobilenetv3_small_minimal_100"),),
        "The release prints 65M MAdds for V3-Small-minimalistic, barely less than its (also too high) 66M for "
        "V3-Small, although minimalistic drops SE and the 5x5 kernels; timm's port of the checkpoint counts what "
        "we count. Its 2.0M parameters agree."),
    KnownDisagreement(
        PublishedRow("v1-release", V1, 0.75, 224, "317", "2.59"), ("madds",),
        (Alternative("V1 paper, Table 6", madds="325"),),
        "The release's α = 0.75 MAdds are 2.6% below our count at every resolution, while its parameters (2.59M) "
        "agree and the paper prints 325M at 224 px."),
    *(KnownDisagreement(
        PublishedRow("v1-release", V1, 0.75, r, m, "2.59"), ("madds",), (),
        "Low by the same 2.6% as the 224 px line; no other publication gives α = 0.75 at this resolution.")
      for r, m in ((192, "233"), (160, "162"), (128, "104"))),
    KnownDisagreement(
        PublishedRow("v1-release", V1, 0.25, 192, "34", "0.47"), ("madds",), (),
        "Out of line with its own neighbours (41M at 224 px, 21M at 160 px, both agreeing with ours): 34M at "
        "192 px would mean more MAdds per pixel than at 224 px. Its parameters agree."),
)


@dataclass(frozen=True)
class Peer:
    """Another library's build of one of our networks, compared at PEER_CLASSES classes and 224 px."""

    library: Literal["torchvision", "timm"]
    name: str
    model: str
    width: float = 1.0
    options: Options = ()
    params: int | None = None  # the parameter count it publishes
    same_from: str | None = None  # when not identical: our first `features` index from which every layer agrees
    note: str = ""

    @property
    def label(self) -> str:
        return network_label(self.model, self.width, self.options)

    def profile(self) -> Profile:
        return our_profile(self.model, self.width, self.options, 224, PEER_CLASSES)


PEERS: tuple[Peer, ...] = (
    Peer("torchvision", "mobilenet_v2", V2, params=3_504_872),
    Peer("torchvision", "mobilenet_v3_large", V3L, params=5_483_032),
    Peer("torchvision", "mobilenet_v3_small", V3S, params=2_542_856),
    Peer("timm", "mobilenetv1_100", V1, params=4_231_976),
    Peer("timm", "mobilenetv2_100", V2),
    Peer("timm", "mobilenetv2_050", V2, 0.5),
    Peer("timm", "mobilenetv2_140", V2, 1.4),
    Peer("timm", "mobilenetv3_large_075", V3L, 0.75),
    Peer("timm", "mobilenetv3_small_075", V3S, 0.75),
    Peer("timm", "mobilenetv3_small_050", V3S, 0.5, same_from="features.2",
         note="timm keeps the stem at 16 channels for α < 0.75 (`fix_stem` in its _gen_mobilenet_v3) where the "
              "TF-slim code, torchvision and we scale it to 8, so the stem and first block differ; every later layer "
              "is identical."),
    Peer("timm", "tf_mobilenetv3_large_minimal_100", V3L, options=MINIMAL),
    Peer("timm", "tf_mobilenetv3_small_minimal_100", V3S, options=MINIMAL),
)


@functools.cache
def peer_profile(library: str, name: str, num_classes: int = PEER_CLASSES) -> Profile:
    """`mobilenets.profile` of torchvision's or timm's build of `name` at 224 px (timm is imported only here)."""
    if library == "timm":
        import timm

        model = timm.create_model(name, num_classes=num_classes)
    else:
        model = torchvision.models.get_model(name, num_classes=num_classes)
    return profile(model, 224)
