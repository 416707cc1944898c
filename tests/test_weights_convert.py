"""Loading torchvision's and timm's checkpoints: identical outputs, safe reading, clear mismatch errors."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import nontrivial
from safetensors.torch import save_file

import mobilenets
from mobilenets.weights import WeightsError

timm = pytest.importorskip("timm")

# (source, the peer's model name, our name, our options)
PEERS = [
    ("torchvision", "mobilenet_v2", "mobilenet_v2", {}),
    ("torchvision", "mobilenet_v3_large", "mobilenet_v3_large", {}),
    ("torchvision", "mobilenet_v3_small", "mobilenet_v3_small", {}),
    ("timm", "mobilenetv1_100", "mobilenet_v1", {}),
    ("timm", "mobilenetv2_050", "mobilenet_v2", {"width_mult": 0.5}),
    ("timm", "mobilenetv2_140", "mobilenet_v2", {"width_mult": 1.4}),
    ("timm", "mobilenetv3_large_100", "mobilenet_v3_large", {}),
    ("timm", "mobilenetv3_small_075", "mobilenet_v3_small", {"width_mult": 0.75}),
    ("timm", "tf_mobilenetv3_large_075", "mobilenet_v3_large", {"width_mult": 0.75}),
    ("timm", "tf_mobilenetv3_small_minimal_100", "mobilenet_v3_small", {"minimal": True}),
]


def peer_model(source: str, name: str) -> torch.nn.Module:
    """A peer model with trained-like weights: logits of about 1 that every layer shows in."""
    model = getattr(torchvision.models, name)() if source == "torchvision" else timm.create_model(name)
    return nontrivial(model, size=128)  # image_batch's


def save_peer(model: torch.nn.Module, path) -> None:
    if path.suffix == ".safetensors":  # safetensors files come with keys sorted, not in module order
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize(("source", "peer", "ours", "options"), PEERS, ids=[p[1] for p in PEERS])
def test_peer_weights_give_identical_outputs(tmp_path, image_batch, source, peer, ours, options, suffix):
    model = peer_model(source, peer)
    path = tmp_path / f"{peer}{suffix}"
    save_peer(model, path)
    loaded = mobilenets.create_model(ours, weights=path, **options).eval()
    with torch.no_grad():
        expected, actual = model(image_batch), loaded(image_batch)
    assert (actual - expected).abs().max().item() <= 1e-5


def test_tf_port_is_recognised_in_a_hub_cache(tmp_path, image_batch):
    model = peer_model("timm", "tf_mobilenetv3_small_minimal_100")
    path = tmp_path / "models--timm--tf_mobilenetv3_small_minimal_100.in1k" / "snapshots" / "0123abc"
    path.mkdir(parents=True)
    save_peer(model, path / "model.safetensors")
    loaded = mobilenets.create_model("mobilenet_v3_small", minimal=True, weights=path / "model.safetensors")
    with torch.no_grad():
        assert (loaded.eval()(image_batch) - model(image_batch)).abs().max().item() <= 1e-5


def test_tf_port_needs_tf_padding(tmp_path, image_batch):
    """The same tensors under PyTorch padding and eps give visibly different outputs: the layout matters."""
    model = peer_model("timm", "tf_mobilenetv3_small_minimal_100")
    path = tmp_path / "weights.pth"  # a name that does not say "tf_": the layout cannot be detected
    save_peer(model, path)
    plain = mobilenets.create_model("mobilenet_v3_small", minimal=True, weights=path).eval()
    told = mobilenets.create_model("mobilenet_v3_small", minimal=True, tf_padding=True, weights=path).eval()
    with torch.no_grad():
        expected = model(image_batch)
        assert (told(image_batch) - expected).abs().max().item() <= 1e-5
        assert (plain(image_batch) - expected).abs().max().item() > 1e-3


def test_frozen_batchnorm_loads_the_same_numbers(tmp_path, image_batch):
    model = peer_model("torchvision", "mobilenet_v2")
    save_peer(model, tmp_path / "v2.pth")
    frozen = mobilenets.create_model("mobilenet_v2", weights=tmp_path / "v2.pth", norm_layer="frozen_batchnorm")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    with torch.no_grad():
        assert (frozen.eval()(image_batch) - model(image_batch)).abs().max().item() <= 1e-5


@pytest.mark.parametrize(("ours", "options", "expected"), [
    ("mobilenet_v3_large", {}, "missing features.4.se.fc1.weight (24, 72, 1, 1)"),  # V2 weights into V3
    ("mobilenet_v2", {"width_mult": 0.5}, "in the file but"),     # wrong width
    ("mobilenet_v2", {"num_classes": 10}, "classifier.1.weight has shape (1000, 1280) in the file but "
                                          "head.fc.weight is (10, 1280)"),
])
def test_mismatch_names_the_key_and_shapes(tmp_path, ours, options, expected):
    path = tmp_path / "v2.pth"
    save_peer(peer_model("torchvision", "mobilenet_v2"), path)
    with pytest.raises(WeightsError) as info:
        mobilenets.create_model(ours, weights=path, **options)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


class _RunsCode:
    """Unpickling this would run `touch` on the marker file: a stand-in for a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"features.0.0.weight": _RunsCode(marker)}, path)
    with pytest.raises(WeightsError, match="refused"):
        mobilenets.create_model("mobilenet_v2", weights=path)
    assert not marker.exists()


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("missing.pth", None, "no such file"),
    ("garbage.pth", b"\x00not a checkpoint" * 10, "not a readable PyTorch checkpoint"),
    ("garbage.safetensors", b"\x00not safetensors" * 10, "not a readable safetensors file"),
])
def test_unreadable_files_fail_in_one_line(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=expected) as info:
        mobilenets.create_model("mobilenet_v2", weights=path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_foreign_layout_is_named(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(WeightsError, match="unrecognised layout"):
        mobilenets.create_model("mobilenet_v2", weights=path)


def test_published_name_downloads_and_loads(tmp_path, monkeypatch, image_batch):
    """A registry name is downloaded (here: served from a local file) and built with the entry's options."""
    from mobilenets.weights import registry

    model = peer_model("timm", "tf_mobilenetv3_small_075")
    path = tmp_path / "tf_mobilenetv3_small_075-da427f52.pth"
    save_peer(model, path)
    monkeypatch.setattr(registry, "download", lambda name: path)
    loaded = mobilenets.create_model("mobilenet_v3_small", weights="timm/tf_mobilenetv3_small_075.in1k").eval()
    assert loaded.config["width_mult"] == 0.75 and loaded.config["tf_padding"] is True
    with torch.no_grad():
        assert (loaded(image_batch) - model(image_batch)).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="weights for mobilenet_v3_small, not mobilenet_v2"):
        mobilenets.create_model("mobilenet_v2", weights="timm/tf_mobilenetv3_small_075.in1k")


def test_a_plain_pickle_is_refused_without_torchs_protocol_warning(tmp_path):
    import pickle
    import warnings

    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"features.0.0.weight": [1.0]}, protocol=5))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(WeightsError, match=r"plain\.pth: not a "
                                                                                              "readable PyTorch"):
        warnings.simplefilter("always")
        mobilenets.create_model("mobilenet_v2", weights=path)
    assert [str(w.message) for w in caught] == []
