"""ExecuTorch programs: every family lowered whole to XNNPACK with outputs equal to PyTorch's, int8 through PT2E
reproducible after reloading, and the exported file itself evaluated and predicted with from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import error_to_signal, nontrivial
from torch import nn

import mobilenets
from mobilenets.cli import main
from mobilenets.deploy import load_exported
from mobilenets.deploy.executorch import choose_float_groups, export_pte
from mobilenets.deploy.runtime import sidecar_path

pytest.importorskip("executorch")

SIZE = 64


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_fp32_program_matches_pytorch_and_runs_wholly_on_xnnpack(tmp_path, name):
    """export_pte refuses a program with any operator outside the delegate, so writing it proves the lowering."""
    model = nontrivial(mobilenets.create_model(name, width_mult=0.25, num_classes=10), size=SIZE)
    path = export_pte(model, tmp_path / "m.pte", resolution=SIZE, metadata={"classes": list("abcdefghij")})
    program = load_exported(path)
    images = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(images).numpy()
    assert np.abs(program.run(images.numpy())[0] - expected).max() <= 1e-4
    assert program.input_shape == (1, 3, SIZE, SIZE)
    assert program.metadata["classes"] == list("abcdefghij") and program.metadata["int8"] is False


def test_int8_program_is_close_to_fp32_and_identical_after_reloading(tmp_path):
    model = nontrivial(mobilenets.create_model("mobilenet_v3_small", width_mult=0.25, num_classes=10), size=SIZE)
    generator = torch.Generator().manual_seed(2)
    calibration = [torch.randn(4, 3, SIZE, SIZE, generator=generator).numpy() for _ in range(2)]
    path = export_pte(model, tmp_path / "int8.pte", resolution=SIZE, calibration=calibration)
    images = torch.randn(16, 3, SIZE, SIZE, generator=generator)
    first, again = (load_exported(path).run(images.numpy())[0] for _ in range(2))
    assert np.array_equal(first, again)
    with torch.no_grad():
        expected = model(images).numpy()
    assert error_to_signal(first, expected) < 0.5
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["int8"] is True and sidecar["float_groups"]["groups"] == list(choose_float_groups().groups)


def test_layer_groups_kept_in_float_keep_float_weights_and_the_default_follows_the_cpu(monkeypatch):
    from mobilenets import cpu
    from mobilenets.deploy.executorch import _for_xnnpack, _quantized, float_module_names

    model = nontrivial(mobilenets.create_model("mobilenet_v3_small", width_mult=0.25, num_classes=10), size=SIZE)
    groups = ("first_conv", "se", "large_depthwise")
    names = float_module_names(model, groups)
    assert len(names) == 1 + 8 + 9 and names[0] == "features.0.0"  # V3-Small: eight 5x5 depthwise, nine SE
    calibration = [torch.randn(2, 3, SIZE, SIZE).numpy()]
    quantized = _quantized(_for_xnnpack(model), torch.randn(1, 3, SIZE, SIZE), calibration, groups)
    float_convs, int8_convs = set(), set()
    for node in quantized.graph.nodes:
        if node.target in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
            module = list(node.meta["nn_module_stack"].values())[-1][0]
            dequantized = "dequantize" in str(node.args[1].target) if node.args[1].op == "call_function" else False
            (int8_convs if dequantized else float_convs).add(module)
    in_se = {n for n in float_convs if any(n.startswith(se + ".") for se in names)}
    assert float_convs - in_se == set(names) - {n for n in names if n.endswith(".se")} and len(in_se) == 18
    assert int8_convs and not int8_convs & float_convs

    x86 = cpu.CpuInfo("x", "x86_64", ("avx2",))
    monkeypatch.setattr(cpu, "describe", lambda: x86)
    assert choose_float_groups().groups == groups and choose_float_groups(()).groups == ()
    monkeypatch.setattr(cpu, "describe", lambda: cpu.CpuInfo("a", "aarch64", ("asimd", "asimddp")))
    assert choose_float_groups().groups == () and choose_float_groups(["se"]).groups == ("se",)
    with pytest.raises(ValueError, match="unknown layer group 'stem'"):
        choose_float_groups(["stem"])


def test_an_operator_xnnpack_does_not_take_is_named(tmp_path):
    class Sorted(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumsum(x, dim=1)

    with pytest.raises(ValueError, match=r"m\.pte: XNNPACK does not take aten\.cumsum\.default"):
        export_pte(Sorted(), tmp_path / "m.pte", resolution=32)
    assert not (tmp_path / "m.pte").exists()


def test_a_program_is_checked_for_its_input_shape_and_kind(tmp_path):
    path = export_pte(nn.Conv2d(3, 4, 3), tmp_path / "conv.pte", resolution=32)
    with pytest.raises(ValueError, match=r"conv\.pte: expects input of shape Nx3x32x32, got 1x3x64x64"):
        load_exported(path).run(np.zeros((1, 3, 64, 64), np.float32))
    (tmp_path / "text.pte").write_text("not a program at all")
    with pytest.raises(ValueError, match=r"text\.pte: not an ExecuTorch program"):
        load_exported(tmp_path / "text.pte")


def test_the_exported_classifier_is_evaluated_and_predicted_with_itself(tmp_path, capsys, classifier_run):
    checkpoint = classifier_run[0] / "best.safetensors"
    program = tmp_path / "model.pte"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "executorch", "--output", str(program)]) == 0
    reports = []
    for source in (["--checkpoint", str(checkpoint)], ["--model", str(program)]):
        capsys.readouterr()
        assert main(["eval", *source, "--json", "--output", str(tmp_path)]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[1]["top1"] == reports[0]["top1"] and reports[1]["images"] == reports[0]["images"]
    assert reports[1]["loss"] == pytest.approx(reports[0]["loss"], abs=1e-4)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 40, 40)).save(image)
    outputs = []
    for source in (["--checkpoint", str(checkpoint)], ["--model", str(program)]):
        assert main(["predict", *source, str(image), "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    ours, shipped = ([(p["class"], p["probability"]) for p in output["predictions"]] for output in outputs)
    assert [c for c, _ in shipped] == [c for c, _ in ours] and len(ours) == 5
    assert [p for _, p in shipped] == pytest.approx([p for _, p in ours], abs=1e-4)


def test_int8_export_of_a_checkpoint_reports_against_fp32(tmp_path, capsys, classifier_run):
    from PIL import Image

    checkpoint = classifier_run[0] / "best.safetensors"
    (tmp_path / "calibration").mkdir()
    for i in range(8):  # a few of the user's own images to calibrate on (the default is 256 built-in ones)
        Image.new("RGB", (48, 40), (30 * i, 200 - 20 * i, 90)).save(tmp_path / "calibration" / f"{i}.png")
    status = main(["export", "--checkpoint", str(checkpoint), "--format", "executorch", "--int8", "--calibration",
                   str(tmp_path / "calibration"), "--output", str(tmp_path / "int8.pte")])
    out = capsys.readouterr().out
    assert status == 0 and "int8 vs fp32 on 40 images of built-in synthetic shapes" in out
    assert f"layers kept in float: {choose_float_groups()}" in out
    assert "wrote " + str(tmp_path / "int8.pte") + " (executorch, int8, 32x32, batch 1)" in out
    assert main(["eval", "--model", str(tmp_path / "int8.pte"), "--json", "--output", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 40


def test_a_detector_exports_to_a_program_with_pytorchs_outputs(tmp_path, capsys, detector_run):
    """Its neck's nearest upsampling runs on XNNPACK as the transposed convolution it equals."""
    from mobilenets.tasks.detection.checkpoint import load_detector

    checkpoint = detector_run[0] / "best.safetensors"
    detector = load_detector(checkpoint)
    size = detector.image_size
    path = tmp_path / "detector.pte"
    assert main(["detect", "export", "--checkpoint", str(checkpoint), "--format", "executorch", "--output",
                 str(path)]) == 0
    assert f"wrote {path} (executorch, {size}x{size}" in capsys.readouterr().out
    program = load_exported(path)
    assert program.metadata["classes"] == detector.classes
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = [t.numpy() for t in detector.model(images)]
    for ours, theirs in zip(program.run(images.numpy()), expected, strict=True):
        assert ours.shape == theirs.shape and np.abs(ours - theirs).max() <= 1e-4
    capsys.readouterr()
    scores = {}
    for source in (["--checkpoint", str(checkpoint)], ["--model", str(path)]):
        assert main(["detect", "eval", *source, "--json"]) == 0
        scores[source[0]] = json.loads(capsys.readouterr().out)
    assert scores["--model"] == pytest.approx(scores["--checkpoint"], abs=1e-3)  # the program is the network
    drawn = tmp_path / "drawn"
    assert main(["detect", "predict", "--model", str(path), str(detector_run[0] / "curves.png"), "--output",
                 str(drawn)]) == 0
    assert (drawn / "detections.json").is_file() and (drawn / "curves.png").is_file()
