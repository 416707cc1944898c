"""The published-weights registry: its data, verified downloads (from a local server, no network), preprocessing."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from PIL import Image

import mobilenets
from mobilenets.weights import registry
from mobilenets.weights.registry import download, fetch_verified, get_published, list_published, transforms_for


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclasses.dataclass
class Served:
    url: str
    data: bytes
    digest: str
    stop: Callable[[], None]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A local HTTP server on a free port serving one file of random bytes."""
    root = tmp_path / "served"
    root.mkdir()
    data = os.urandom(300_000)
    (root / "blob-weights.pth").write_bytes(data)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():
            stopped.set()
            server.shutdown()
            server.server_close()
            thread.join()

    url = f"http://127.0.0.1:{server.server_address[1]}/blob-weights.pth"
    yield Served(url, data, hashlib.sha256(data).hexdigest(), stop)
    stop()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.mark.parametrize("check", ["full", "prefix"])
def test_fetch_verified_downloads_and_checks_hash(served: Served, cache: Path, check: str) -> None:
    kwargs = {"sha256": served.digest} if check == "full" else {"sha256_prefix": served.digest[:8]}
    path = fetch_verified(served.url, cache, progress=False, **kwargs)
    assert path == cache / "blob-weights.pth"
    assert path.read_bytes() == served.data
    assert sorted(os.listdir(cache)) == ["blob-weights.pth"]


@pytest.mark.parametrize("check", ["full", "prefix"])
def test_fetch_verified_rejects_wrong_hash_and_leaves_nothing(served: Served, cache: Path, check: str) -> None:
    wrong = "0" * 64 if served.digest[0] != "0" else "f" * 64
    expected = wrong if check == "full" else wrong[:8]
    kwargs = {"sha256": expected} if check == "full" else {"sha256_prefix": expected}
    message = f"{served.url}: sha256 {served.digest} does not match the published {expected}"
    with pytest.raises(ValueError, match=re.escape(message)):
        fetch_verified(served.url, cache, progress=False, **kwargs)
    assert os.listdir(cache) == []


def test_fetch_verified_uses_cache(served: Served, cache: Path) -> None:
    first = fetch_verified(served.url, cache, sha256=served.digest, progress=False)
    served.stop()
    assert fetch_verified(served.url, cache, sha256=served.digest, progress=False) == first
    assert first.read_bytes() == served.data


def test_fetch_verified_replaces_corrupt_cached_file(served: Served, cache: Path) -> None:
    cache.mkdir()
    (cache / "blob-weights.pth").write_bytes(b"truncated")
    path = fetch_verified(served.url, cache, sha256_prefix=served.digest[:10], progress=False)
    assert path.read_bytes() == served.data
    assert os.listdir(cache) == ["blob-weights.pth"]


def test_fetch_verified_file_url(tmp_path: Path, cache: Path) -> None:
    data = os.urandom(1000)
    source = tmp_path / "local.bin"
    source.write_bytes(data)
    path = fetch_verified(source.as_uri(), cache, sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert path.read_bytes() == data


def test_fetch_verified_without_hash_logs_digest(served: Served, cache: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        path = fetch_verified(served.url, cache, progress=False, filename="named.bin")
    assert path == cache / "named.bin"
    assert served.digest in caplog.text


def test_download_uses_registry_entry(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "torchvision/mobilenet_v2.imagenet1k_v2"
    entry = dataclasses.replace(get_published(name), url=served.url, sha256_prefix=served.digest[:8])
    monkeypatch.setitem(registry.REGISTRY, name, entry)
    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "env-cache"))
    path = download(name, progress=False)
    assert path == tmp_path / "env-cache" / "blob-weights.pth"
    assert path.read_bytes() == served.data
    assert download(name, tmp_path / "explicit", progress=False).parent == tmp_path / "explicit"

    monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(entry, sha256="0" * 64))
    with pytest.raises(ValueError, match="does not match the published"):
        download(name, tmp_path / "bad", progress=False)
    assert os.listdir(tmp_path / "bad") == []


def test_download_unverified_entry_needs_opt_in(served: Served, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    name = "timm/mobilenetv1_100.ra4_e3600_r224_in1k"
    with pytest.raises(ValueError, match="allow_unverified"):
        download(name, cache)
    monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(get_published(name), url=served.url))
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        path = download(name, cache, progress=False, allow_unverified=True)
    assert path == cache / "mobilenetv1_100.ra4_e3600_r224_in1k.pth"
    assert served.digest in caplog.text


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"'nope'.*torchvision/mobilenet_v2\.imagenet1k_v1"):
        get_published("nope")
    with pytest.raises(ValueError, match="nope"):
        download("nope")


def test_list_published_filters_by_model() -> None:
    assert len(list_published()) == len(registry.REGISTRY) == 18
    small = list_published("mobilenet_v3_small")
    assert {w.name for w in small} == {
        "torchvision/mobilenet_v3_small.imagenet1k_v1", "timm/mobilenetv3_small_100.lamb_in1k",
        "timm/mobilenetv3_small_075.lamb_in1k", "timm/tf_mobilenetv3_small_100.in1k",
        "timm/tf_mobilenetv3_small_075.in1k", "timm/tf_mobilenetv3_small_minimal_100.in1k",
    }
    assert list_published("resnet50") == []


@pytest.mark.parametrize("entry", list_published(), ids=lambda w: w.name)
def test_registry_entry_is_consistent(entry: registry.PublishedWeights) -> None:
    assert entry.model in mobilenets.list_models()
    assert entry.name.startswith(f"{entry.source}/")
    assert entry.url.startswith("https://")
    assert entry.crop <= entry.resize
    assert entry.num_classes == 1000 and entry.input_range == "0-1"
    assert entry.interpolation in ("bilinear", "bicubic")
    assert len(entry.mean) == len(entry.std) == 3 and all(0 < v < 1 for v in entry.mean + entry.std)
    assert entry.top1 is None or 50 < entry.top1 < 90
    host = urlparse(entry.url).netloc
    if host in ("github.com", "download.pytorch.org"):
        hex_part = Path(urlparse(entry.url).path).stem.rsplit("-", 1)[1]
        assert entry.sha256_prefix is not None and len(entry.sha256_prefix) >= 8
        assert hex_part.startswith(entry.sha256_prefix)
    if entry.sha256 is not None:
        assert len(entry.sha256) == 64 and entry.sha256.startswith(entry.sha256_prefix or "")
    model = mobilenets.create_model(entry.model, **entry.model_options)
    assert model.num_classes == entry.num_classes


@pytest.mark.parametrize("name", ["torchvision/mobilenet_v3_large.imagenet1k_v2",
                                  "timm/tf_mobilenetv3_small_100.in1k"])
def test_transforms_for_normalises_constant_image(name: str) -> None:
    entry = get_published(name)
    colour = (200, 100, 30)
    expected = torch.tensor([(c / 255 - m) / s for c, m, s in zip(colour, entry.mean, entry.std, strict=True)])
    image = Image.new("RGB", (300, 200), colour)
    for transform, x in ((transforms_for(entry), image), (transforms_for(name), image),
                         (transforms_for(entry), torch.tensor(colour, dtype=torch.uint8)[:, None, None]
                          .expand(3, 200, 300).contiguous())):
        out = transform(x)
        assert out.shape == (3, 224, 224) and out.dtype == torch.float32
        torch.testing.assert_close(out, expected[:, None, None].expand_as(out), atol=1e-5, rtol=0)


@pytest.mark.parametrize("entry", list_published(), ids=lambda w: w.name)
def test_registry_entry_matches_publisher_metadata(entry: registry.PublishedWeights) -> None:
    if entry.source == "torchvision":
        from torchvision.models import get_model_weights

        weights = get_model_weights(entry.model)[entry.name.rsplit(".", 1)[1].upper()]
        t = weights.transforms()
        assert weights.url == entry.url
        assert weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] == entry.top1
        assert (t.resize_size, t.crop_size, t.interpolation.value) == ([entry.resize], [entry.crop],
                                                                        entry.interpolation)
        assert (tuple(t.mean), tuple(t.std)) == (entry.mean, entry.std)
        return
    timm = pytest.importorskip("timm")
    cfg = timm.models.get_pretrained_cfg(entry.name.split("/", 1)[1])
    assert cfg.url == entry.url or f"https://huggingface.co/{cfg.hf_hub_id}/" in entry.url
    assert (cfg.input_size[1], round(cfg.input_size[1] / cfg.crop_pct)) == (entry.crop, entry.resize)
    assert (cfg.interpolation, cfg.mean, cfg.std) == (entry.interpolation, entry.mean, entry.std)
