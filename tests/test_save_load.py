"""Our own format: safetensors plus the config that rebuilds the same model."""

from __future__ import annotations

import pytest
import torch
from conftest import nontrivial

import mobilenets
from mobilenets.weights import WeightsError


@pytest.mark.parametrize(("name", "options"), [
    ("mobilenet_v1", {"width_mult": 0.25, "separable": False}),
    ("mobilenet_v2", {"width_mult": 0.5, "num_classes": 3}),
    ("mobilenet_v3_large", {"dilated": True, "reduced_tail": True, "act_layer": "relu6"}),
    ("mobilenet_v3_small", {"minimal": True, "tf_padding": True, "num_classes": 7}),
])
def test_save_then_load_is_the_same_model(tmp_path, image_batch, name, options):
    model = nontrivial(mobilenets.create_model(name, **options))
    path = mobilenets.save(model, tmp_path / "model.safetensors")
    loaded = mobilenets.load(path).eval()
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(image_batch), model(image_batch))
    again = mobilenets.create_model(name, weights=path, **options).eval()  # the same file through create_model
    with torch.no_grad():
        assert torch.equal(again(image_batch), model(image_batch))
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left behind


def test_reset_classifier_is_saved(tmp_path):
    model = mobilenets.create_model("mobilenet_v3_small", width_mult=0.5)
    model.reset_classifier(4)
    loaded = mobilenets.load(mobilenets.save(model, tmp_path / "m.safetensors"))
    assert loaded.num_classes == 4


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.safetensors"
    mobilenets.save(mobilenets.create_model("mobilenet_v3_small", width_mult=0.5), path)
    before = path.read_bytes()
    odd = mobilenets.create_model("mobilenet_v3_small", width_mult=0.5, act_layer=torch.nn.GELU)
    with pytest.raises(ValueError, match="non-name options"):
        mobilenets.save(odd, path)
    assert path.read_bytes() == before


def test_load_needs_our_config(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(mobilenets.create_model("mobilenet_v2", width_mult=0.5).state_dict(), path)
    with pytest.raises(WeightsError, match="no mobilenets config"):
        mobilenets.load(path)
    assert mobilenets.create_model("mobilenet_v2", width_mult=0.5, weights=path) is not None
