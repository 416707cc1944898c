"""The zoo as a whole: structure the papers prescribe, any resolution, features, overrides, script and export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mobilenets
from mobilenets.models.blocks import DepthwiseSeparable, InvertedResidual
from mobilenets.models.layers import Conv2dSame, make_divisible

MODELS = mobilenets.list_models()
# blocks per network at α = 1 (the seed code built n + 1 per V2 stage)
BLOCK_COUNTS = {"mobilenet_v1": 13, "mobilenet_v2": 17, "mobilenet_v3_large": 15, "mobilenet_v3_small": 11}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("width", [0.35, 1.0])
@pytest.mark.parametrize("resolution", [64, 97])
def test_forward_backward_any_width_and_resolution(name, width, resolution):
    model = mobilenets.create_model(name, width_mult=width, num_classes=7)
    x = torch.randn(2, 3, resolution, resolution)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_list_models():
    assert MODELS == ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.mark.parametrize("name", MODELS)
def test_block_count_and_shortcuts(name):
    """n blocks per stage; an identity shortcut exactly where stride is 1 and width is kept; no projections."""
    model = mobilenets.create_model(name)
    blocks = [m for m in model.modules() if isinstance(m, (InvertedResidual, DepthwiseSeparable))]
    assert len(blocks) == BLOCK_COUNTS[name]
    for block in (b for b in blocks if isinstance(b, InvertedResidual)):
        stride = block.depthwise[0].stride[0]
        same_width = block.depthwise[0].in_channels if isinstance(block.expand, nn.Identity) \
            else block.expand[0].in_channels
        assert block.use_shortcut == (stride == 1 and same_width == block.project[0].out_channels)
        assert block.project[-1].__class__ is nn.BatchNorm2d  # linear bottleneck: no activation after projection


@pytest.mark.parametrize(("value", "expected"), [(32 * 0.35, 16), (16 * 0.75, 16), (1280, 1280), (96 * 0.35, 32),
                                                 (24 * 0.5, 16), (3.0, 8)])
def test_make_divisible(value, expected):
    assert make_divisible(value) == expected


@pytest.mark.parametrize(("name", "channels"), [
    ("mobilenet_v1", {4: 128, 8: 256, 16: 512, 32: 1024}),
    ("mobilenet_v2", {4: 24, 8: 32, 16: 96, 32: 1280}),
    ("mobilenet_v3_large", {4: 24, 8: 40, 16: 112, 32: 960}),
    ("mobilenet_v3_small", {4: 16, 8: 24, 16: 48, 32: 576}),
])
def test_features_at_strides(name, channels):
    model = mobilenets.create_model(name).eval()
    info = {f.stride: f.channels for f in model.feature_info}
    assert {s: info[s] for s in channels} == channels  # known before any forward pass
    maps = model.features_at(torch.randn(1, 3, 160, 160))
    assert [tuple(m.shape) for m in maps] == [(1, channels[s], 160 // s, 160 // s) for s in (4, 8, 16, 32)]


def test_dilated_reduced_tail_backbone():
    model = mobilenets.create_model("mobilenet_v3_large", dilated=True, reduced_tail=True)
    assert max(f.stride for f in model.feature_info) == 16
    maps = model.features_at(torch.randn(1, 3, 128, 128))
    assert [m.shape[-1] for m in maps] == [32, 16, 8]
    assert maps[-1].shape == (1, 480, 8, 8)  # 960 / 2 at output stride 16
    with pytest.raises(ValueError, match="no feature map at stride 32"):
        model.features_at(torch.randn(1, 3, 64, 64), [32])


def test_reset_classifier():
    model = mobilenets.create_model("mobilenet_v3_small")
    model.reset_classifier(5)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1024)


def test_options_set_together_compose_when_each_changes_something():
    model = mobilenets.create_model("mobilenet_v3_small", minimal=True, hardswish_from=96)
    kinds = {type(m) for m in model.modules()}
    assert nn.Hardswish in kinds and nn.Hardsigmoid not in kinds  # hard-swish back from the 96-wide layers, no SE


def test_a_file_that_recorded_an_option_changing_nothing_still_loads(tmp_path):
    """Saved before such options were refused (minimal with se=False): built without it, the same network."""
    from mobilenets.weights.io import save

    model = mobilenets.create_model("mobilenet_v3_small", minimal=True, num_classes=10).eval()
    model.config["se"] = False
    loaded = mobilenets.create_model("mobilenet_v3_small", weights=save(model, tmp_path / "old.safetensors")).eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded(x), model(x)) and loaded.config["minimal"] is True
    with pytest.raises(ValueError, match="se=False changes nothing with minimal=True"):
        mobilenets.create_model("mobilenet_v3_small", weights=tmp_path / "old.safetensors", se=False)


def test_minimal_has_no_se_hardswish_or_large_kernels():
    model = mobilenets.create_model("mobilenet_v3_large", minimal=True)
    kinds = {type(m) for m in model.modules()}
    assert nn.Hardswish not in kinds and nn.Hardsigmoid not in kinds
    assert all(m.kernel_size[0] <= 3 for m in model.modules() if isinstance(m, nn.Conv2d))


def test_standard_convolution_variant():
    model = mobilenets.create_model("mobilenet_v1", separable=False)
    assert not any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules())


def test_activation_override():
    model = mobilenets.create_model("mobilenet_v3_large", act_layer="relu6")
    kinds = {type(m) for m in model.modules()}
    assert nn.Hardswish not in kinds and nn.ReLU6 in kinds


def test_tf_padding_is_asymmetric_on_stride_two():
    model = mobilenets.create_model("mobilenet_v3_small", tf_padding=True)
    same = [m for m in model.modules() if isinstance(m, Conv2dSame)]
    assert same and all(m.stride[0] == 2 for m in same)
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.features_at(torch.randn(1, 3, 99, 99), [2])[0].shape[-1] == 50  # ceil(99 / 2)


def test_initialisation_matches_reference():
    torch.manual_seed(0)
    model = mobilenets.create_model("mobilenet_v2")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        elif isinstance(m, nn.Linear):
            assert torch.all(m.bias == 0) and abs(m.weight.std().item() - 0.01) < 0.001
    conv = model.features[-1][0]  # 320 -> 1280, fan-out = 1280
    assert abs(conv.weight.std().item() - (2 / 1280) ** 0.5) < 0.1 * (2 / 1280) ** 0.5


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: mobilenets.create_model("mobilenet_v4"), ValueError, "unknown model 'mobilenet_v4'"),
    (lambda: mobilenets.create_model("mobilenet_v2", width_mult=0), ValueError, r"width_mult must be in \(0, 4\]"),
    (lambda: mobilenets.create_model("mobilenet_v2", minimal=True), TypeError, "has no option 'minimal'"),
    (lambda: mobilenets.create_model("mobilenet_v1", act_layer="gelu3"), ValueError, "unknown activation"),
    (lambda: mobilenets.create_model("mobilenet_v3_large", minimal=True, swish=True), ValueError,
     "mobilenet_v3_large: swish=True changes nothing with minimal=True"),
    (lambda: mobilenets.create_model("mobilenet_v3_small", se=False, se_ratio=0.5), ValueError,
     "mobilenet_v3_small: se_ratio=0.5 changes nothing with se=False"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_and_export(name):
    model = mobilenets.create_model(name, width_mult=0.5, num_classes=10).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = model(x)
        scripted = torch.jit.script(model)
        assert torch.allclose(scripted(x), expected, atol=1e-6)
        assert [m.shape for m in scripted.features_at(x)] == [m.shape for m in model.features_at(x)]
        exported = torch.export.export(model, (x,))
        assert torch.allclose(exported.module()(x), expected, atol=1e-6)
