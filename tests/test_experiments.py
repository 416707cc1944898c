"""The papers' claims as experiments: the zoo options they vary build what the papers describe, the statistics
judge claims against the noise, and an interrupted experiment continues to the same results."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

from mobilenets import create_model, load, save
from mobilenets.experiments import EXPERIMENTS, ExperimentError, plan, run_experiment
from mobilenets.experiments import runner as experiment_runner
from mobilenets.experiments.definitions import Claim
from mobilenets.experiments.report import RunResult, cost_exponent, judge
from mobilenets.models.blocks import ExpansionResidual, InvertedResidual
from mobilenets.models.layers import make_divisible
from mobilenets.recipes import ConfigError


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_linear_bottleneck_off_puts_the_blocks_activation_after_every_projection():
    for name, blocks in (("mobilenet_v2", 17), ("mobilenet_v3_small", 11)):
        linear = create_model(name, width_mult=0.5)
        nonlinear = create_model(name, width_mult=0.5, linear_bottleneck=False)
        assert [len(b.project) for b in linear.modules() if isinstance(b, InvertedResidual)] == [2] * blocks
        projections = [b.project for b in nonlinear.modules() if isinstance(b, InvertedResidual)]
        assert [len(p) for p in projections] == [3] * blocks
        assert [type(p[2]) for p in projections] == [type(b.depthwise[2]) for b in nonlinear.modules()
                                                     if isinstance(b, InvertedResidual)]


def test_shortcut_placements_of_the_v2_paper():
    # V2 (α 1): 10 blocks keep width and resolution; joining expansions, 10 consecutive pairs have equal expanded
    # widths after a stride-1 block (two of them across stage boundaries, where the input widths agree).
    x = torch.randn(2, 3, 64, 64)
    bottleneck = create_model("mobilenet_v2").eval()
    expansion = create_model("mobilenet_v2", shortcut="expansion")
    assert sum(b.use_shortcut for b in bottleneck.modules() if isinstance(b, InvertedResidual)) == 10
    assert not any(b.use_shortcut for b in create_model("mobilenet_v2", shortcut="none").modules()
                   if isinstance(b, InvertedResidual))
    regrouped = [b for b in expansion.modules() if isinstance(b, ExpansionResidual)]
    assert len(regrouped) == 17 and sum(b.use_shortcut for b in regrouped) == 10
    # the same layers, regrouped: built from one seed and with the shortcuts taken out, the same function
    torch.manual_seed(0)
    regrouped_model = create_model("mobilenet_v2", shortcut="expansion").eval()
    torch.manual_seed(0)
    none = create_model("mobilenet_v2", shortcut="none").eval()
    with_shortcuts = regrouped_model(x)
    for b in regrouped_model.modules():
        if isinstance(b, ExpansionResidual):
            b.use_shortcut = False
    assert torch.equal(regrouped_model(x), none(x))
    assert with_shortcuts.shape == (2, 1000) and not torch.equal(with_shortcuts, none(x))
    assert [f.stride for f in expansion.feature_info] == [2, 4, 8, 16, 32]


def test_hardswish_placement_swish_and_squeeze_excitation_options():
    def acts(model: nn.Module) -> tuple[int, int, int]:
        return _count(model, nn.Hardswish), _count(model, nn.ReLU), _count(model, nn.SiLU)

    # V3-Large: 20 conv layers take the table's activation (stem, 15 bnecks' expand/depthwise, last conv) plus
    # the head's; its 8 SE blocks add one ReLU each.
    assert acts(create_model("mobilenet_v3_large")) == (21, 19, 0)
    assert acts(create_model("mobilenet_v3_large", hardswish_from=16)) == (32, 8, 0)
    assert acts(create_model("mobilenet_v3_large", hardswish_from=112)) == (12, 28, 0)
    assert acts(create_model("mobilenet_v3_large", swish=True)) == (0, 19, 21)
    with pytest.raises(ValueError, match=r"hardswish_from: no layer is 17 wide; choose from \[16, 24, 40"):
        create_model("mobilenet_v3_large", hardswish_from=17)
    assert _count(create_model("mobilenet_v3_small", se=False), SqueezeExcitation) == 0
    half = create_model("mobilenet_v3_small", se_ratio=0.5)
    squeezes = [(m.fc1.in_channels, m.fc1.out_channels) for m in half.modules() if isinstance(m, SqueezeExcitation)]
    assert len(squeezes) == 9 and all(out == make_divisible(c * 0.5) for c, out in squeezes)
    gates = {type(m.scale_activation) for m in create_model("mobilenet_v3_small", se_gate="sigmoid").modules()
             if isinstance(m, SqueezeExcitation)}
    assert gates == {nn.Sigmoid}
    with pytest.raises(ValueError, match="shortcut must be one of bottleneck, expansion, none"):
        create_model("mobilenet_v2", shortcut="sideways")
    with pytest.raises(TypeError, match="mobilenet_v2 has no option 'se'"):
        create_model("mobilenet_v2", se=False)


def test_a_variant_saved_and_loaded_is_the_same_network(tmp_path):
    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", width_mult=0.5, num_classes=7, shortcut="expansion",
                         linear_bottleneck=False, hardswish_from=40, se_gate="sigmoid").eval()
    save(model, tmp_path / "variant.safetensors")
    loaded = load(tmp_path / "variant.safetensors").eval()
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model(x), loaded(x))


def test_claims_are_judged_against_the_noise():
    better = Claim("a beats b", "a", "b")
    assert judge(better, [0.90, 0.91, 0.92], [0.80, 0.81, 0.82]).outcome == "holds"
    assert judge(better, [0.80, 0.81, 0.82], [0.90, 0.91, 0.92]).outcome == "does not hold: the reverse is resolved"
    unresolved = judge(better, [0.80, 0.90, 0.85], [0.84, 0.86, 0.82])
    assert unresolved.outcome == "not resolved at this budget"
    assert unresolved.noise == pytest.approx(2 * math.sqrt(0.0025 / 3 + 0.0004 / 3))
    assert judge(better, [0.9], [0.8]).outcome.startswith("not resolved: one seed")
    similar = Claim("a is about b", "a", "b", similar=True)
    assert judge(similar, [0.80, 0.90, 0.85], [0.84, 0.86, 0.82]).outcome.startswith("consistent")
    assert judge(similar, [0.90, 0.91, 0.92], [0.80, 0.81, 0.82]).outcome == "does not hold: they differ"
    lower_loss = Claim("a trains to a lower loss", "a", "b", metric="train_loss")
    assert judge(lower_loss, [0.40, 0.41, 0.42], [4.0, 4.1, 4.2]).outcome == "holds"


def test_cost_exponent_recovers_the_square_rule():
    results = [RunResult(f"α {a}", 0, {}, 0, round(1e6 * a**2), 0.0) for a in (0.25, 0.5, 0.75, 1.0)]
    assert cost_exponent(results, {f"α {a}": a for a in (0.25, 0.5, 0.75, 1.0)}) == pytest.approx(2.0, abs=1e-5)


def test_every_experiment_varies_only_its_factor():
    for experiment in EXPERIMENTS.values():
        todo = plan(experiment.name)
        assert len(todo.seeds) == 3
        varied = {k for v in experiment.variants for k in v.options}
        assert not varied & set(todo.shared)
        labels = [v.label for v in experiment.variants]
        assert all(c.better in labels and c.worse in labels for c in experiment.claims)
    with pytest.raises(ExperimentError, match="unknown experiment 'nope'"):
        plan("nope")
    with pytest.raises(ExperimentError, match="model_options is what experiment shortcut varies"):
        plan("shortcut", options={"model_options": {}})
    with pytest.raises(ExperimentError, match="unknown backend 'gpu'"):
        plan("shortcut", backends=["gpu"])
    with pytest.raises(ExperimentError, match="--seeds: at most 100, got 101"):
        plan("shortcut", seeds=101)


@pytest.mark.parametrize("recorded", [b"[1, 2]", b'{"experiment": "se", "shared": 5}', b"{oops", b"\x91"])
def test_a_plan_json_that_is_not_ours_is_named_and_kept(tmp_path, recorded):
    (tmp_path / "se").mkdir()
    (tmp_path / "se" / "plan.json").write_bytes(recorded)
    with pytest.raises(ExperimentError, match=r"se/plan\.json: not a plan this command wrote"):
        run_experiment("se", output=tmp_path / "se", progress=False)
    assert (tmp_path / "se" / "plan.json").read_bytes() == recorded


def test_a_bad_training_option_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="batch_size: invalid value 'many'"):
        run_experiment("se", output=tmp_path / "se", options={"batch_size": "many"}, progress=False)
    assert not (tmp_path / "se").exists()


TINY = {"synthetic_train_size": 96, "synthetic_val_size": 48, "image_size": 32, "batch_size": 32}


def _rows(path) -> list[dict]:
    with open(path, newline="") as file:
        return [{k: v for k, v in row.items() if k not in ("training_seconds",)}
                for row in csv.DictReader(file)]


def test_an_interrupted_experiment_continues_to_the_same_results(tmp_path, monkeypatch):
    options = {"seeds": 1, "epochs": 1, "options": TINY, "backends": ["eager"], "progress": False}
    whole = run_experiment("linear-bottleneck", output=tmp_path / "whole", **options)
    report = (whole / "report.md").read_text()
    assert "| linear | " in report and "| relu6 after projection | " in report
    assert "## Latency" in report and (whole / "plot.png").stat().st_size > 0
    assert len(_rows(whole / "results.csv")) == 2

    trained, real_train = [], experiment_runner._train

    def killed_after_one(task, run_options):
        if len(trained) == 1:
            raise KeyboardInterrupt
        trained.append(run_options["output"])
        real_train(task, run_options)

    monkeypatch.setattr(experiment_runner, "_train", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("linear-bottleneck", output=tmp_path / "again", **options)
    monkeypatch.setattr(experiment_runner, "_train", lambda task, run_options: trained.append(run_options["output"])
                        or real_train(task, run_options))
    again = run_experiment("linear-bottleneck", output=tmp_path / "again", **options)
    assert len(trained) == 2 and len(set(trained)) == 2  # the finished run was not trained again
    assert _rows(again / "results.csv") == _rows(whole / "results.csv")
    with pytest.raises(ExperimentError, match=r"holds other options \(epochs\): give another --output"):
        run_experiment("linear-bottleneck", output=again, **{**options, "epochs": 2})
    with pytest.raises(ExperimentError, match="holds experiment 'linear-bottleneck'"):
        run_experiment("shortcut", output=again, **options)
    for run in (again / "runs").iterdir():  # a finished run's files damaged: named, not a traceback
        (run / "metrics.csv").write_text("")
    with pytest.raises(ExperimentError, match=r"runs/.*/metrics\.csv: a finished run's file cannot be read "
                                              r"\(ValueError: no epoch in it\); remove .* to train the run again"):
        run_experiment("linear-bottleneck", output=again, **options)


def test_a_detection_experiment_reads_its_detectors_back_and_times_them(tmp_path):
    """The detector-backbone experiment at a toy size: every backbone's CenterNet is trained, profiled at its
    input size and timed (eager, at the experiments' 224 px), and the claims are judged on the detection
    metrics."""
    tiny = {"synthetic_train_size": 16, "synthetic_val_size": 8, "image_size": 64, "batch_size": 8}
    folder = run_experiment("detector-backbone", output=tmp_path / "det", seeds=1, epochs=1, options=tiny,
                            backends=["eager"], progress=False)
    rows = _rows(folder / "results.csv")
    assert [r["variant"] for r in rows] == ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large",
                                           "mobilenet_v3_small"]
    assert all(float(r["params"]) > 0 and "map50" in r for r in rows)
    report = (folder / "report.md").read_text()
    assert "V2 trains to a much lower loss than V1" in report and "| train_loss |" in report
    assert "## Latency (ms per image, batch 1, 224 px" in report
    assert json.loads((folder / "latency.json").read_text())["sizes"] == dict.fromkeys(
        [r["variant"] for r in rows], 224)


def test_resolution_variants_are_timed_at_their_own_input_size_and_the_others_at_224():
    resolution, width = EXPERIMENTS["resolution"], EXPERIMENTS["width"]
    assert [resolution.timing_size(v) for v in resolution.variants] == [32, 48, 64, 96]
    assert resolution.timing_size_label() == "each variant's input size" and width.timing_size_label() == "224 px"


def test_a_squeeze_ratio_outside_its_interval_is_refused():
    for ratio in (0.0, 1.5):
        with pytest.raises(ValueError, match=rf"se_ratio must be in \(0, 1\], got {ratio}"):
            create_model("mobilenet_v3_small", se_ratio=ratio)
