"""The papers' design claims as controlled experiments: one table of variants per claim, each variant the shared
base options plus the one factor that changes. Everything else (data, schedule, seeds) is the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLASSIFICATION, DETECTION = "classification", "detection"
LOWER_IS_BETTER = ("train_loss", "val_loss")


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: its label and the training options it changes."""

    label: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Claim:
    """What a paper or article says: `better` beats `worse` on `metric` (or, with `similar`, neither does)."""

    text: str
    better: str
    worse: str
    metric: str = "top1"
    similar: bool = False


@dataclass(frozen=True)
class Experiment:
    """A controlled comparison: the task, the options every variant shares, the variants, the claims to check,
    the CPU backends to time the variants on (at `latency_resolution`, or at their own `image_size` where the
    variants set it), and the factor whose cost rule (MAdds ~ factor^2) the profile checks, if any."""

    name: str
    summary: str
    task: str
    base: dict[str, Any]
    variants: tuple[Variant, ...]
    claims: tuple[Claim, ...]
    backends: tuple[str, ...] = ("eager", "onnxruntime")
    latency_resolution: int = 224
    scaling: str | None = None  # "width" or "image_size": MAdds against this factor, fitted exponent
    metrics: tuple[str, ...] = ("top1", "train_loss")

    def timing_size(self, variant: Variant) -> int:
        """The input size `variant` is timed at: its own where it sets one (accuracy and latency then belong to
        the same input), else `latency_resolution`."""
        return int(variant.options.get("image_size", self.latency_resolution))

    def timing_size_label(self) -> str:
        """How a report names the timed input sizes."""
        sizes = {self.timing_size(v) for v in self.variants}
        return f"{sizes.pop()} px" if len(sizes) == 1 else "each variant's input size"


# Every CPU backend of `mobilenets bench` but torch.compile, which compiles for minutes.
EVERY_CPU_BACKEND = ("eager", "channels_last", "torchscript", "onnxruntime", "onnxruntime-int8", "executorch",
                     "executorch-int8")

# The built-in shapes at 64 px: 5 epochs of 5,000 images, 30-80 s per run on 2 cores, so that the largest experiment
# (15 runs) fits in 30 minutes. Far from converged: the claims are checked at this budget, and say so.
_SHAPES = {"synthetic_train_size": 5000, "synthetic_val_size": 1000, "epochs": 5, "image_size": 64}
_V2 = {**_SHAPES, "model": "mobilenet_v2", "width": 0.5}
_V3 = {**_SHAPES, "model": "mobilenet_v3_large", "width": 0.5}
_V3_SMALL = {**_SHAPES, "model": "mobilenet_v3_small", "width": 1.0}


def _zoo(**options: Any) -> dict[str, Any]:
    return {"model_options": options}


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment(
        "separable", "MobileNetV1 from depthwise separable against standard convolutions (V1 paper, Table 4)",
        CLASSIFICATION, {**_SHAPES, "model": "mobilenet_v1", "width": 0.5},
        (Variant("separable", _zoo(separable=True)), Variant("standard", _zoo(separable=False))),
        (Claim("standard convolutions are about 1.1 points more accurate (71.7 vs 70.6 on ImageNet)",
               "standard", "separable"),)),
    Experiment(
        "width", "the width multiplier α: accuracy against cost (V1 paper, Table 6; cost ~ α²)",
        CLASSIFICATION, {**_SHAPES, "model": "mobilenet_v1"},
        tuple(Variant(f"α {w}", {"width": w}) for w in (0.25, 0.5, 0.75, 1.0)),
        (Claim("accuracy drops off smoothly as the network is made thinner (70.6 → 50.6 from α 1 to 0.25)",
               "α 1.0", "α 0.25"),
         Claim("from α 0.75 to 1.0 the gain is small (68.4 → 70.6)", "α 1.0", "α 0.75")),
        scaling="width"),
    Experiment(
        "resolution", "the resolution multiplier ρ: accuracy against cost (V1 paper, Table 7; cost ~ ρ²)",
        CLASSIFICATION, {**{k: v for k, v in _SHAPES.items() if k != "image_size"}, "model": "mobilenet_v1",
                         "width": 0.5},
        tuple(Variant(f"{r} px", {"image_size": r}) for r in (32, 48, 64, 96)),
        (Claim("accuracy drops off smoothly with resolution (70.6 → 64.4 from 224 to 128 px)", "96 px", "32 px"),),
        scaling="image_size"),
    Experiment(
        "linear-bottleneck", "MobileNetV2 with and without an activation after the projection (V2 paper, "
                             "Figure 6a)",
        CLASSIFICATION, _V2,
        (Variant("linear", _zoo(linear_bottleneck=True)), Variant("relu6 after projection",
                                                                   _zoo(linear_bottleneck=False))),
        (Claim("a non-linearity in the bottleneck destroys information and hurts accuracy",
               "linear", "relu6 after projection"),)),
    Experiment(
        "shortcut", "MobileNetV2's shortcuts between bottlenecks, between expansions, or none (V2 paper, "
                    "Figure 6b)",
        CLASSIFICATION, _V2,
        (Variant("between bottlenecks", _zoo(shortcut="bottleneck")),
         Variant("between expansions", _zoo(shortcut="expansion")), Variant("none", _zoo(shortcut="none"))),
        (Claim("shortcuts between the bottlenecks beat shortcuts between the expansions", "between bottlenecks",
               "between expansions"),
         Claim("shortcuts between the bottlenecks beat no shortcuts", "between bottlenecks", "none"))),
    Experiment(
        "activation", "MobileNetV3-Large's non-linearities: ReLU, h-swish from layer N on, swish (V3 paper, "
                      "Table 5 and section 5.2)",
        CLASSIFICATION, _V3,
        (Variant("ReLU", _zoo(act_layer="relu")),
         Variant("h-swish @16", _zoo(hardswish_from=16)),
         Variant("h-swish @80 (paper)", _zoo()),
         Variant("h-swish @112", _zoo(hardswish_from=112)),
         Variant("swish @80", _zoo(swish=True))),
        (Claim("h-swish in the deeper layers beats ReLU everywhere", "h-swish @80 (paper)", "ReLU"),
         Claim("h-swish from the 80-channel layers on is about as accurate as h-swish everywhere",
               "h-swish @80 (paper)", "h-swish @16", similar=True),
         Claim("h-swish is about as accurate as swish", "h-swish @80 (paper)", "swish @80", similar=True)),
        backends=EVERY_CPU_BACKEND),
    Experiment(
        "se", "MobileNetV3-Small with and without squeeze-excitation, its squeeze ratio and its gate (V3 paper, "
              "section 5.3)",
        CLASSIFICATION, _V3_SMALL,
        (Variant("SE 1/4, hard-sigmoid", _zoo()), Variant("no SE", _zoo(se=False)),
         Variant("SE 1/8", _zoo(se_ratio=0.125)), Variant("SE 1/2", _zoo(se_ratio=0.5)),
         Variant("SE 1/4, sigmoid", _zoo(se_gate="sigmoid"))),
        (Claim("squeeze-excitation improves accuracy", "SE 1/4, hard-sigmoid", "no SE"),
         Claim("the hard-sigmoid gate is about as accurate as the sigmoid", "SE 1/4, hard-sigmoid",
               "SE 1/4, sigmoid", similar=True))),
    Experiment(
        "v1-vs-v2-cpu", "MobileNetV1 against MobileNetV2 at the same width: V2 is more accurate and smaller, but "
                        "not always faster on a CPU",
        CLASSIFICATION, {**_SHAPES, "width": 0.5},
        (Variant("mobilenet_v1", {"model": "mobilenet_v1"}), Variant("mobilenet_v2", {"model": "mobilenet_v2"})),
        (Claim("V2 is more accurate than V1 (72.0 vs 70.6 at α 1 on ImageNet)", "mobilenet_v2", "mobilenet_v1"),),
        backends=EVERY_CPU_BACKEND),
    Experiment(
        "detector-backbone", "CenterNet on V1, V2, V3-Large and V3-Small backbones at the same budget (the "
                             "practical article: V1's loss stays near 4.0, V2's falls below 0.5)",
        DETECTION, {"synthetic_train_size": 1500, "synthetic_val_size": 300, "epochs": 3, "image_size": 128,
                    "width": 0.5},
        tuple(Variant(b, {"backbone": b}) for b in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large",
                                                     "mobilenet_v3_small")),
        (Claim("V2 trains to a much lower loss than V1", "mobilenet_v2", "mobilenet_v1", "train_loss"),
         Claim("V2 detects better than V1", "mobilenet_v2", "mobilenet_v1", "map50")),
        backends=(), metrics=("map50", "train_loss")),
)}

QUICK = {CLASSIFICATION: {"synthetic_train_size": 1500, "synthetic_val_size": 500, "epochs": 2},
         DETECTION: {"synthetic_train_size": 600, "synthetic_val_size": 150, "epochs": 2}}
"""The smaller schedule of `--quick`: a first look in a few minutes, too small to resolve most claims."""


def list_experiments() -> list[str]:
    """The names `mobilenets experiment` takes."""
    return list(EXPERIMENTS)
