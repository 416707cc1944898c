"""Export: ONNX and TorchScript outputs equal PyTorch's, batch norm folded, activations the runtime fuses."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch
from conftest import error_to_signal, int8_weights, nontrivial, on_cpu

import mobilenets
from mobilenets import cpu
from mobilenets.deploy import export_graph, fold_batchnorm

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

MODELS = mobilenets.list_models()


def small(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return nontrivial(mobilenets.create_model(name, width_mult=0.5, num_classes=10))


@pytest.mark.parametrize("name", MODELS)
def test_folding_batchnorm_keeps_outputs(name):
    model = small(name)
    x = torch.randn(2, 3, 64, 64)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        # outputs of scale 1: fp32 reassociation stays near 1e-5 on any kernel path; a broken layer gives 0.1+
        assert (folded(x) - model(x)).abs().max().item() <= 3e-5


@pytest.mark.parametrize("name", MODELS)
def test_onnx_and_torchscript_match_pytorch_at_batch_1_and_3(tmp_path, name):
    model = small(name)
    onnx_path = export_graph(model, "onnx", tmp_path / "m.onnx", resolution=96, dynamic_batch=True,
                             metadata={"classes": [str(i) for i in range(10)]})
    script_path = export_graph(model, "torchscript", tmp_path / "m.pt", resolution=96)
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
    path = export_graph(small("mobilenet_v3_large"), "onnx", tmp_path / "m.onnx", resolution=96)
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


def nchwc_block() -> int | None:
    """The channel block of onnxruntime's NCHWc layout on this CPU, None if its instruction sets are unknown: MLAS
    blocks by 16 with AVX-512F, by 8 on other x86 CPUs, by 16 on ARM builds that have the layout."""
    info = cpu.describe()
    if not info.is_x86:
        return 16
    return (16 if "avx512f" in info.flags else 8) if info.flags else None


@pytest.mark.parametrize("dynamic_batch", [False, True])
def test_mobilenet_v3_runs_in_the_blocked_layout_without_reorders(tmp_path, dynamic_batch):
    """Global pooling exports as GlobalAveragePool and SE's broadcast scale gets a nearest Resize, so onnxruntime
    keeps the network in NCHWc: one reorder out before the classifier, and inside only where a channel count is
    not a multiple of the layout's block (16 with AVX-512, 8 with AVX2: at width 0.5 every count is a multiple of
    8, and 8 and 72 are not of 16); every pool whose channels are a multiple of the block runs blocked."""
    path = export_graph(small("mobilenet_v3_small"), "onnx", tmp_path / "m.onnx", resolution=96,
                  dynamic_batch=dynamic_batch)
    graph = onnx.load(str(path)).graph
    exported = collections.Counter(n.op_type for n in graph.node)
    assert exported["ReduceMean"] == 0 and exported["GlobalAveragePool"] == 10  # 9 squeeze-excitations + head
    assert exported["Resize"] == 9
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimised = onnx.load(str(tmp_path / "optimised.onnx")).graph.node
    block = nchwc_block()
    if block is None or not any(n.domain == "com.microsoft.nchwc" for n in optimised):
        pytest.skip("onnxruntime's NCHWc layout is not used, or its block is unknown, on this CPU")
    typed = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph.value_info
    channels = {v.name: v.type.tensor_type.shape.dim[1].dim_value for v in typed
                if len(v.type.tensor_type.shape.dim) == 4}
    blockable = [channels[n.input[0]] % block == 0 for n in graph.node if n.op_type == "GlobalAveragePool"]
    assert any(blockable)
    assert sum(n.domain == "com.microsoft.nchwc" for n in optimised if n.op_type == "GlobalAveragePool") \
        == sum(blockable)
    reordered_out = [next(a.i for a in n.attribute if a.name == "channels") for n in optimised
                     if n.op_type == "ReorderOutput"]
    assert sum(c % block == 0 for c in reordered_out) == 1  # the classifier's; the others are forced by a count
    assert all(channels.get(n.input[0], block) % block for n in optimised if n.op_type == "ReorderInput")


def test_channel_scales_are_broadcast_only_onto_larger_maps(tmp_path):
    """V2 has no squeeze-excitation; at 32 px V3-Small's last three SE blocks see 1x1 maps and need no Resize."""
    resizes = {}
    for name in ("mobilenet_v2", "mobilenet_v3_small"):
        model = small(name)
        path = export_graph(model, "onnx", tmp_path / f"{name}.onnx", resolution=32)
        resizes[name] = sum(n.op_type == "Resize" for n in onnx.load(str(path)).graph.node)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            assert np.abs(session.run(None, {"image": x.numpy()})[0] - model(x).numpy()).max() <= 1e-4
    assert resizes == {"mobilenet_v2": 0, "mobilenet_v3_small": 6}


def test_quantizing_drops_the_layout_resizes_and_keeps_the_function(tmp_path):
    from mobilenets.deploy import quantize
    from mobilenets.deploy.quantize import _drop_channel_broadcasts

    fp32 = export_graph(small("mobilenet_v3_small"), "onnx", tmp_path / "fp32.onnx", resolution=64,
                        dynamic_batch=True)
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
    path = export_graph(model, "pt2", tmp_path / "m.pt2", resolution=64, dynamic_batch=True)
    program = torch.export.load(str(path))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert (program.module()(x) - model(x)).abs().max().item() <= 1e-4


def test_export_command(tmp_path, capsys):
    from mobilenets.cli import main

    out = tmp_path / "v3s.onnx"
    assert main(["export", "mobilenet_v3_small", "--width", "0.5", "--format", "onnx", "--resolution", "64",
                 "--output", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 64, 64]
    assert main(["export", "mobilenet_v2", "--checkpoint", "x", "--format", "onnx", "--output", str(out)]) == 2
    assert "not both" in capsys.readouterr().err


def test_int8_model_agrees_with_fp32_and_reloads_the_same(tmp_path):
    from mobilenets.data.transforms import default_preprocess
    from mobilenets.deploy import calibration_batches, quantize

    fp32 = export_graph(small("mobilenet_v2"), "onnx", tmp_path / "fp32.onnx", resolution=64,
                        dynamic_batch=True, metadata={"classes": [str(i) for i in range(10)]})
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
    assert error_to_signal(int8_out, fp32_out) <= 0.5  # 0.27 at 8 bits, 0.33 at 7; calibrated on images / 4: 1.06
    assert "mobilenets.classes" in run[1].get_modelmeta().custom_metadata_map


@pytest.mark.parametrize(("architecture", "flags", "bits", "reason"), [
    ("x86_64", ("avx2", "fma"), 7, "this CPU has no VNNI: 8-bit weights would saturate onnxruntime's u8s8 kernels"),
    ("x86_64", ("avx2", "avx512f", "avx512bw"), 7, "this CPU has no VNNI"),
    ("x86_64", ("avx2", "avx512f", "avx512_vnni"), 8, "full range; this CPU has VNNI"),
    ("x86_64", ("avx2", "avx_vnni"), 8, "full range; this CPU has VNNI"),
    ("aarch64", ("asimd",), 7, "this CPU has no asimddp (ARM's int8 dot product)"),
    ("aarch64", ("asimd", "asimddp"), 8, "full range; this CPU has asimddp (ARM's int8 dot product)"),
    ("x86_64", (), 7, "this CPU's instruction sets are unknown: 7-bit weights are safe on every CPU"),
])
def test_int8_weights_are_chosen_by_the_cpu_unless_asked(monkeypatch, architecture, flags, bits, reason):
    from mobilenets.deploy import choose_weight_range

    on_cpu(monkeypatch, flags, architecture)
    chosen = choose_weight_range()
    assert (chosen.bits, chosen.reduce_range) == (bits, bits == 7) and chosen.reason.startswith(reason)
    assert str(chosen) == f"{bits}-bit ({chosen.reason})"
    assert choose_weight_range(True).bits == 7 and choose_weight_range(False).bits == 8
    saturates = bits == 7 and architecture == "x86_64" and bool(flags)  # 8 bits asked where they saturate
    assert ("saturate" in choose_weight_range(False).reason) == saturates


def test_int8_weights_use_7_bits_with_reduce_range_and_8_without(tmp_path, monkeypatch):
    from mobilenets.data.transforms import default_preprocess
    from mobilenets.deploy import calibration_batches, quantize

    fp32 = export_graph(small("mobilenet_v3_small"), "onnx", tmp_path / "fp32.onnx", resolution=64)
    batches = list(calibration_batches(None, default_preprocess(64), images=16))
    no_vnni, vnni = ("avx2",), ("avx2", "avx512_vnni")
    largest = {}
    for bits, flags, reduce_range in [(7, no_vnni, None), (8, no_vnni, False), (8, vnni, None), (7, vnni, True)]:
        on_cpu(monkeypatch, flags)
        int8 = quantize(fp32, tmp_path / "int8.onnx", batches, reduce_range=reduce_range)
        weights = int8_weights(int8)
        assert len(weights) > 40
        largest[bits, reduce_range] = max(np.abs(w.astype(int)).max() for w, _ in weights)
        stored = json.loads({p.key: p.value for p in onnx.load(str(int8)).metadata_props}["mobilenets.int8_weights"])
        assert stored["bits"] == bits and stored["reduce_range"] == (bits == 7) and stored["cpu"] == cpu.summary()
    assert largest[7, None] <= 64 and largest[7, True] <= 64  # 7 bits: no u8 x s8 pair overflows int16
    assert largest[8, None] == largest[8, False] == 127


def test_layer_groups_kept_in_float_get_no_quantize_nodes(tmp_path):
    from mobilenets.data.transforms import default_preprocess
    from mobilenets.deploy import calibration_batches, quantize

    fp32 = export_graph(small("mobilenet_v3_small"), "onnx", tmp_path / "fp32.onnx", resolution=64)
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
    with pytest.raises(ValueError, match="unknown layer group 'stem'; choose from first_conv, se, large_depthwise, "
                                         "classifier"):
        quantize(fp32, tmp_path / "x.onnx", [], keep_float=("stem",))
    int8 = quantize(fp32, tmp_path / "dw.onnx", calibration_batches(None, default_preprocess(64), images=4),
                    keep_float=("large_depthwise",))
    graph = onnx.load(str(int8)).graph
    made_by = {out: n.op_type for n in graph.node for out in n.output}
    kernels = {n.name: next(a.ints[0] for a in n.attribute if a.name == "kernel_shape") for n in graph.node
               if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)}
    int8_weights = {n.name for n in graph.node if n.name in kernels and made_by.get(n.input[1]) == "DequantizeLinear"}
    assert sorted(kernels.values()).count(5) == 8 and int8_weights == {k for k, size in kernels.items() if size == 3}


def test_int8_export_command(tmp_path, capsys):
    from mobilenets.cli import main
    from mobilenets.deploy import choose_weight_range

    out = tmp_path / "v2_int8.onnx"
    assert main(["export", "mobilenet_v2", "--width", "0.35", "--format", "onnx", "--resolution", "64", "--int8",
                 "--output", str(out)]) == 0
    chosen = choose_weight_range()  # the command chose for this CPU, and says why
    assert f"int8 weights: {chosen}" in capsys.readouterr().out
    stored = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert json.loads(stored["mobilenets.int8_weights"])["bits"] == chosen.bits


def test_export_command_refuses_int8_where_it_cannot_be(tmp_path, capsys):
    from mobilenets.cli import main

    assert main(["export", "mobilenet_v2", "--format", "pt2", "--int8", "--output", str(tmp_path / "x.pt2")]) == 2
    assert "--int8 needs --format onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit) as unknown:
        main(["export", "mobilenet_v2", "--format", "onnx", "--int8", "--keep-float", "se,stem", "--output",
              str(tmp_path / "x.onnx")])
    assert unknown.value.code == 2 and "unknown layer group 'stem'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_export_command_takes_one_weight_range_and_only_with_int8(capsys):
    from mobilenets.cli import main

    with pytest.raises(SystemExit) as both:
        main(["export", "mobilenet_v2", "--format", "onnx", "--int8", "--full-range", "--reduce-range",
              "--output", "x.onnx"])
    assert both.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert main(["export", "mobilenet_v2", "--format", "onnx", "--reduce-range", "--output", "x.onnx"]) == 2
    assert "--full-range and --reduce-range need --int8" in capsys.readouterr().err
