"""Published ImageNet weights (torchvision, timm) as data: where to get them, how to check them, how to feed them.

Each entry names the zoo model and the `create_model` options its layout needs, the download URL and hash, the
published top-1, and the evaluation preprocessing. `download` fetches a file into a cache and verifies its sha256;
`transforms_for` builds the matching preprocessing pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from torch.hub import download_url_to_file
from torchvision.transforms import v2

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess, eval_transform
from .convert import Checkpoint, WeightsError, read_weights

log = logging.getLogger(__name__)

INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PublishedWeights:
    """One published checkpoint: what to build, where to download it, its hash, accuracy and preprocessing.

    `sha256_prefix` is the digest prefix the publisher put in the file name (`<name>-<prefix>.pth`, what
    torch.hub's check_hash verifies); `sha256` is the full digest where one is published. Preprocessing: scale
    pixels to `input_range`, resize the shorter side to `resize`, centre-crop `crop`, then normalise.
    """

    name: str
    model: str
    model_options: dict[str, Any] = field(hash=False)
    source: Literal["torchvision", "timm"]
    url: str
    sha256: str | None
    sha256_prefix: str | None
    top1: float | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int
    crop: int
    interpolation: Literal["bilinear", "bicubic"]
    num_classes: int = 1000
    input_range: Literal["0-1"] = "0-1"


_TORCHVISION_URL = "https://download.pytorch.org/models/"
_TIMM_URL = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
_TORCHVISION_V3 = {"bn_eps": 1e-3, "bn_momentum": 0.01}  # torchvision trains its V3 with these BN settings


def _torchvision(weights: str, model: str, file: str, top1: float, resize: int,
                 options: dict[str, Any] | None = None) -> PublishedWeights:
    return PublishedWeights(
        name=f"torchvision/{model}.{weights}", model=model, model_options=dict(options or {}), source="torchvision",
        url=_TORCHVISION_URL + file, sha256=None, sha256_prefix=_hash_in_name(file), top1=top1,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, resize=resize, crop=224, interpolation="bilinear",
    )


def _timm(tag: str, model: str, url: str, top1: float, options: dict[str, Any] | None = None,
          *, inception: bool = False, interpolation: Literal["bilinear", "bicubic"] = "bicubic",
          crop: int = 224, crop_pct: float = 0.875) -> PublishedWeights:
    file = urlparse(url).path.rsplit("/", 1)[-1]
    return PublishedWeights(
        name=f"timm/{tag}", model=model, model_options=dict(options or {}), source="timm", url=url, sha256=None,
        sha256_prefix=_hash_in_name(file), top1=top1,
        mean=INCEPTION_MEAN if inception else IMAGENET_MEAN, std=INCEPTION_STD if inception else IMAGENET_STD,
        resize=round(crop / crop_pct), crop=crop, interpolation=interpolation,
    )


def _hash_in_name(file: str) -> str | None:
    """The hex digest prefix in a `<name>-<hex>.<ext>` file name (torch.hub's convention), or None."""
    stem = file.split(".", 1)[0]
    _, sep, tail = stem.rpartition("-")
    return tail if sep and len(tail) >= 8 and all(c in "0123456789abcdef" for c in tail) else None


_TF = {"tf_padding": True}
# torchvision 0.29 weight enums; timm 1.0 pretrained cfgs, top-1 from timm's results/results-imagenet.csv.
_ENTRIES = [
    _torchvision("imagenet1k_v1", "mobilenet_v2", "mobilenet_v2-b0353104.pth", 71.878, 256),
    _torchvision("imagenet1k_v2", "mobilenet_v2", "mobilenet_v2-7ebf99e0.pth", 72.154, 232),
    _torchvision("imagenet1k_v1", "mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth", 74.042, 256,
                 _TORCHVISION_V3),
    _torchvision("imagenet1k_v2", "mobilenet_v3_large", "mobilenet_v3_large-5c1a4163.pth", 75.274, 232,
                 _TORCHVISION_V3),
    _torchvision("imagenet1k_v1", "mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", 67.668, 256,
                 _TORCHVISION_V3),
    _timm("mobilenetv1_100.ra4_e3600_r224_in1k", "mobilenet_v1",
          "https://huggingface.co/timm/mobilenetv1_100.ra4_e3600_r224_in1k/resolve/main/model.safetensors",
          75.388, inception=True),
    _timm("mobilenetv2_100.ra_in1k", "mobilenet_v2", _TIMM_URL + "mobilenetv2_100_ra-b33bc2c4.pth", 72.910),
    _timm("mobilenetv2_050.lamb_in1k", "mobilenet_v2", _TIMM_URL + "mobilenetv2_050-3d30d450.pth", 65.928,
          {"width_mult": 0.5}),
    _timm("mobilenetv2_140.ra_in1k", "mobilenet_v2", _TIMM_URL + "mobilenetv2_140_ra-21a4e913.pth", 76.528,
          {"width_mult": 1.4}),
    _timm("mobilenetv3_large_100.ra_in1k", "mobilenet_v3_large",
          _TIMM_URL + "mobilenetv3_large_100_ra-f55367f5.pth", 75.784),
    _timm("mobilenetv3_small_100.lamb_in1k", "mobilenet_v3_small",
          _TIMM_URL + "mobilenetv3_small_100_lamb-266a294c.pth", 67.636),
    _timm("mobilenetv3_small_075.lamb_in1k", "mobilenet_v3_small",
          _TIMM_URL + "mobilenetv3_small_075_lambc-384766db.pth", 65.284, {"width_mult": 0.75}),
    _timm("tf_mobilenetv3_large_100.in1k", "mobilenet_v3_large",
          _TIMM_URL + "tf_mobilenetv3_large_100-427764d5.pth", 75.510, _TF, inception=True,
          interpolation="bilinear"),
    _timm("tf_mobilenetv3_large_075.in1k", "mobilenet_v3_large",
          _TIMM_URL + "tf_mobilenetv3_large_075-150ee8b0.pth", 73.442, {**_TF, "width_mult": 0.75}, inception=True,
          interpolation="bilinear"),
    _timm("tf_mobilenetv3_large_minimal_100.in1k", "mobilenet_v3_large",
          _TIMM_URL + "tf_mobilenetv3_large_minimal_100-8596ae28.pth", 72.270, {**_TF, "minimal": True},
          inception=True, interpolation="bilinear"),
    _timm("tf_mobilenetv3_small_100.in1k", "mobilenet_v3_small",
          _TIMM_URL + "tf_mobilenetv3_small_100-37f49e2b.pth", 67.922, _TF, inception=True,
          interpolation="bilinear"),
    _timm("tf_mobilenetv3_small_075.in1k", "mobilenet_v3_small",
          _TIMM_URL + "tf_mobilenetv3_small_075-da427f52.pth", 65.706, {**_TF, "width_mult": 0.75}, inception=True,
          interpolation="bilinear"),
    _timm("tf_mobilenetv3_small_minimal_100.in1k", "mobilenet_v3_small",
          _TIMM_URL + "tf_mobilenetv3_small_minimal_100-922a7843.pth", 62.892, {**_TF, "minimal": True},
          inception=True, interpolation="bilinear"),
]
REGISTRY: dict[str, PublishedWeights] = {w.name: w for w in _ENTRIES}


def list_published(model: str | None = None) -> list[PublishedWeights]:
    """All registered published weights, or only those for zoo model `model`, in registry order."""
    return [w for w in REGISTRY.values() if model is None or w.model == model]


def get_published(name: str) -> PublishedWeights:
    """The registry entry called `name` (e.g. 'torchvision/mobilenet_v2.imagenet1k_v2')."""
    if name not in REGISTRY:
        raise ValueError(f"unknown published weights {name!r}; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def transforms_for(weights: PublishedWeights | str) -> v2.Compose:
    """The evaluation preprocessing the weights were published with, for PIL images or uint8 tensors."""
    w = get_published(weights) if isinstance(weights, str) else weights
    return eval_transform(Preprocess(w.crop, w.resize, w.mean, w.std, w.interpolation))


def default_cache_dir() -> Path:
    """Where downloads go: `$MOBILENETS_CACHE`, else `~/.cache/mobilenets`."""
    return Path(os.environ.get("MOBILENETS_CACHE") or Path.home() / ".cache" / "mobilenets").expanduser()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(actual: str, sha256: str | None, sha256_prefix: str | None) -> bool:
    if sha256 is not None:
        return actual == sha256.lower()
    return sha256_prefix is None or actual.startswith(sha256_prefix.lower())


def fetch_verified(url: str, dest_dir: str | Path, sha256: str | None = None, sha256_prefix: str | None = None,
                   progress: bool = True, *, filename: str | None = None) -> Path:
    """Download `url` into `dest_dir` (named `filename`, default the URL's), checking the full sha256 or its prefix.

    A cached file that verifies is returned without downloading. The file only appears under its final name once
    complete and verified; on a mismatch nothing is left behind and ValueError is raised. With no hash at all the
    file is kept unverified and its sha256 is logged.
    """
    dest_dir = Path(dest_dir).expanduser()
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / (filename or Path(urlparse(url).path).name)
    if final.is_file():
        if sha256 is None and sha256_prefix is None:
            return final
        if _matches(_sha256_of(final), sha256, sha256_prefix):
            return final
        log.warning("%s: cached file does not match the published sha256; downloading again", final)
    tmp = dest_dir / f".{final.name}.{uuid.uuid4().hex}.part"
    try:
        download_url_to_file(url, str(tmp), progress=progress)
        actual = _sha256_of(tmp)
        if not _matches(actual, sha256, sha256_prefix):
            raise ValueError(f"{url}: sha256 {actual} does not match the published {sha256 or sha256_prefix}")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    if sha256 is None and sha256_prefix is None:
        log.warning("%s: no published hash to check against; downloaded file has sha256 %s", url, actual)
    return final


def download(name: str, cache_dir: str | Path | None = None, *, progress: bool = True,
             allow_unverified: bool = False) -> Path:
    """Download the published weights `name` into the cache (verified by sha256) and return the file's path.

    Entries with no published hash need `allow_unverified=True`; the obtained sha256 is then logged.
    """
    w = get_published(name)
    if w.sha256 is None and w.sha256_prefix is None and not allow_unverified:
        raise ValueError(f"{name}: {w.url} has no published sha256 to verify against; "
                         "pass allow_unverified=True to download it anyway")
    # Hash-named files keep the publisher's name; others (e.g. a hub's model.safetensors) are named after the entry.
    file = Path(urlparse(w.url).path).name
    filename = file if w.sha256_prefix else f"{w.name.split('/', 1)[-1]}{Path(file).suffix}"
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return fetch_verified(w.url, directory, w.sha256, w.sha256_prefix, progress, filename=filename)


def open_weights(weights: str | Path, model: str) -> Checkpoint:
    """Read weights given as a file or as a registry name (downloaded, hash-checked) for zoo model `model`.

    The checkpoint's `build_options` hold the `create_model` options its architecture needs: the layout's own (e.g.
    BN eps 1e-3 for torchvision's V3), then the registry entry's (its width, 1.0 unless it says otherwise).
    """
    if isinstance(weights, str) and weights in REGISTRY:
        entry = REGISTRY[weights]
        if entry.model != model:
            raise WeightsError(f"{weights} are weights for {entry.model}, not {model}")
        checkpoint = read_weights(download(weights))
        checkpoint.build_options = {**checkpoint.build_options, "width_mult": 1.0,
                                    **entry.model_options}
        return checkpoint
    return read_weights(weights)
