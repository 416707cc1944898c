"""Export: ONNX and TorchScript outputs equal PyTorch's, batch norm folded, activations the runtime fuses."""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import int8_weights, randomize_batchnorm

import mobilenets
from mobilenets.deploy import export, fold_batchnorm

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

MODELS = mobilenets.list_models()


def small(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(mobilenets.create_model(name, width_mult=0.5, num_classes=10)).eval()


@pytest.mark.parametrize("name", MODELS)
def test_folding_batchnorm_keeps_outputs(name):
    model = small(name)
    x = torch.randn(2, 3, 64, 64)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_onnx_and_torchscript_match_pytorch_at_batch_1_and_3(tmp_path, name):
    model = small(name)
    onnx_path = export(model, "onnx", tmp_path / "m.onnx", resolution=96, dynamic_batch=True,
                       metadata={"classes": [str(i) for i in range(10)]})
    script_path = export(model, "torchscript", tmp_path / "m.pt", resolution=96)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(script_path))
    for batch in (1, 3):
        x = torch.randn(batch, 3, 96, 96)
        with torch.no_grad():
            expected = model(x)
            assert (scripted(x) - expected).abs().max().item() <= 1e-4
        actual = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert np.abs(actual - expected.numpy()).max() <= 1e-4
    assert json.loads(session.get_modelmeta().custom_metadata_map["mobilenets.classes"])[0] == "0"


def test_onnxruntime_fuses_hard_swish_into_convolutions(tmp_path):
    path = export(small("mobilenet_v3_large"), "onnx", tmp_path / "m.onnx", resolution=96)
    exported = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert exported["HardSwish"] > 0 and exported["HardSigmoid"] > 0  # the operators themselves, not x*relu6(x+3)/6
    assert "BatchNormalization" not in exported
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    nodes = onnx.load(str(tmp_path / "optimised.onnx")).graph.node
    fused = [a.s for n in nodes for a in n.attribute if a.name == "activation"]
    assert b"HardSwish" in fused
    assert not [n for n in nodes if n.op_type == "HardSwish"]  # every hard-swish rides on a convolution


@pytest.mark.parametrize("dynamic_batch", [False, True])
def test_mobilenet_v3_runs_in_the_blocked_layout_without_reorders(tmp_path, dynamic_batch):
    """Global pooling exports as GlobalAveragePool and SE's broadcast scale gets a nearest Resize, so onnxruntime
    keeps the whole network in NCHWc: one reorder out before the classifier, none inside."""
    path = export(small("mobilenet_v3_small"), "onnx", tmp_path / "m.onnx", resolution=96,
                  dynamic_batch=dynamic_batch)
    exported = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert exported["ReduceMean"] == 0 and exported["GlobalAveragePool"] == 10  # 9 squeeze-excitations + head
    assert exported["Resize"] == 9
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimised = onnx.load(str(tmp_path / "optimised.onnx")).graph.node
    assert all(n.domain == "com.microsoft.nchwc" for n in optimised if n.op_type == "GlobalAveragePool")
    layout = collections.Counter(n.op_type for n in optimised)
    assert layout["ReorderInput"] == 0 and layout["ReorderOutput"] == 1


def test_channel_scales_are_broadcast_only_onto_larger_maps(tmp_path):
    """V2 has no squeeze-excitation; at 32 px V3-Small's last three SE blocks see 1x1 maps and need no Resize."""
    resizes = {}
    for name in ("mobilenet_v2", "mobilenet_v3_small"):
        model = small(name)
        path = export(model, "onnx", tmp_path / f"{name}.onnx", resolution=32)
        resizes[name] = sum(n.op_type == "Resize" for n in onnx.load(str(path)).graph.node)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            assert np.abs(session.run(None, {"image": x.numpy()})[0] - model(x).numpy()).max() <= 1e-4
    assert resizes == {"mobilenet_v2": 0, "mobilenet_v3_small": 6}


def test_quantizing_drops_the_layout_resizes_and_keeps_the_function(tmp_path):
    from mobilenets.deploy import quantize
    from mobilenets.deploy.quantize import _drop_channel_broadcasts

    fp32 = export(small("mobilenet_v3_small"), "onnx", tmp_path / "fp32.onnx", resolution=64, dynamic_batch=True)
    unbroadcast = onnx.load(str(fp32))
    _drop_channel_broadcasts(unbroadcast.graph)
    assert not any("channel_broadcast" in e.name for e in [*unbroadcast.graph.value_info, *unbroadcast.graph.node,
                                                            *unbroadcast.graph.initializer])
    onnx.save(unbroadcast, str(tmp_path / "unbroadcast.onnx"))
    x = {"image": np.random.default_rng(0).random((3, 3, 64, 64), np.float32)}
    with_resize, without = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, x)[0]
                            for p in (fp32, tmp_path / "unbroadcast.onnx"))
    assert np.abs(with_resize - without).max() <= 1e-5
    int8 = quantize(fp32, tmp_path / "int8.onnx", [x["image"]])
    operators = collections.Counter(n.op_type for n in onnx.load(str(int8)).graph.node)
    assert operators["Resize"] == 0 and operators["Mul"] >= 9


def test_pt2_export_reloads(tmp_path):
    model = small("mobilenet_v2")
    path = export(model, "pt2", tmp_path / "m.pt2", resolution=64, dynamic_batch=True)
    program = torch.export.load(str(path))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert (program.module()(x) - model(x)).abs().max().item() <= 1e-4


def test_export_command(tmp_path):
    out = tmp_path / "v3s.onnx"
    done = subprocess.run([sys.executable, "-m", "mobilenets", "export", "mobilenet_v3_small", "--width", "0.5",
                           "--format", "onnx", "--resolution", "64", "--output", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and out.is_file(), done.stderr
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 64, 64]
    both = subprocess.run([sys.executable, "-m", "mobilenets", "export", "mobilenet_v2", "--checkpoint", "x",
                           "--format", "onnx", "--output", str(out)], capture_output=True, text=True)
    assert both.returncode == 2 and "not both" in both.stderr


def test_int8_model_agrees_with_fp32_and_reloads_the_same(tmp_path):
    from mobilenets.data.transforms import default_preprocess
    from mobilenets.deploy import calibration_batches, quantize

    fp32 = export(small("mobilenet_v2"), "onnx", tmp_path / "fp32.onnx", resolution=64, dynamic_batch=True,
                  metadata={"classes": [str(i) for i in range(10)]})
    preprocess = default_preprocess(64)
    int8 = quantize(fp32, tmp_path / "int8.onnx", calibration_batches(None, preprocess, images=64))
    graph = onnx.load(str(int8)).graph
    first = next(n for n in graph.node if graph.input[0].name in n.input)
    assert first.op_type == "QuantizeLinear"  # everything in int8 by default, the first convolution too
    images = np.concatenate(list(calibration_batches(None, preprocess, images=48)))
    run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32, int8, int8)]
    fp32_out, int8_out, reloaded = (s.run(None, {"image": images})[0] for s in run)
    assert np.array_equal(int8_out, reloaded)
    assert (fp32_out.argmax(1) == int8_out.argmax(1)).mean() >= 0.9
    assert "mobilenets.classes" in run[1].get_modelmeta().custom_metadata_map


def test_int8_weights_use_7_bits_unless_full_range_is_asked(tmp_path):
    from mobilenets.data.transforms import default_preprocess
    from mobilenets.deploy import calibration_batches, quantize

    fp32 = export(small("mobilenet_v3_small"), "onnx", tmp_path / "fp32.onnx", resolution=64)
    batches = list(calibration_batches(None, default_preprocess(64), images=16))
    reduced = int8_weights(quantize(fp32, tmp_path / "7bit.onnx", batches))
    full = int8_weights(quantize(fp32, tmp_path / "8bit.onnx", batches, reduce_range=False))
    assert len(reduced) == len(full) > 40
    assert max(np.abs(w.astype(int)).max() for w, _ in reduced) <= 64  # 7 bits: no u8 x s8 pair overflows int16
    assert max(np.abs(w.astype(int)).max() for w, _ in full) == 127


def test_layer_groups_kept_in_float_get_no_quantize_nodes(tmp_path):
    from mobilenets.data.transforms import default_preprocess
    from mobilenets.deploy import calibration_batches, quantize

    fp32 = export(small("mobilenet_v3_small"), "onnx", tmp_path / "fp32.onnx", resolution=64)
    int8 = quantize(fp32, tmp_path / "int8.onnx", calibration_batches(None, default_preprocess(64), images=16),
                    keep_float=("first_conv", "classifier"))
    graph = onnx.load(str(int8)).graph
    made_by = {out: n.op_type for n in graph.node for out in n.output}
    stored = {t.name for t in graph.initializer}
    stem = next(n for n in graph.node if graph.input[0].name in n.input)
    hard_swish = [n for n in graph.node if stem.output[0] in n.input]  # inlined as HardSigmoid + Mul
    assert stem.op_type == "Conv" and sorted(n.op_type for n in hard_swish) == ["HardSigmoid", "Mul"]
    assert not any(made_by.get(i) == "DequantizeLinear" for n in [stem, *hard_swish] for i in n.input)
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 2 and all(n.input[1] in stored for n in gemms)  # float weights, not int8 + DQ
    assert sum(made_by.get(n.input[1]) == "DequantizeLinear" for n in graph.node if n.op_type == "Conv") > 20
    with pytest.raises(ValueError, match="unknown layer group 'stem'; choose from first_conv, se, classifier"):
        quantize(fp32, tmp_path / "x.onnx", [], keep_float=("stem",))


def test_int8_export_command(tmp_path):
    out = tmp_path / "v2_int8.onnx"
    done = subprocess.run([sys.executable, "-m", "mobilenets", "export", "mobilenet_v2", "--width", "0.35",
                           "--format", "onnx", "--resolution", "64", "--int8", "--output", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and out.is_file(), done.stderr
    refused = subprocess.run([sys.executable, "-m", "mobilenets", "export", "mobilenet_v2", "--format", "pt2",
                              "--int8", "--output", str(tmp_path / "x.pt2")], capture_output=True, text=True)
    assert refused.returncode == 2 and "--int8 needs --format onnx" in refused.stderr
    unknown = subprocess.run([sys.executable, "-m", "mobilenets", "export", "mobilenet_v2", "--format", "onnx",
                              "--int8", "--keep-float", "se,stem", "--output", str(tmp_path / "x.onnx")],
                             capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown layer group 'stem'" in unknown.stderr
