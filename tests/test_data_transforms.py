"""Preprocess/Augment pipelines: shapes and dtypes, every option runs, checkpoint round trip, bad values refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from mobilenets.data import Augment, Preprocess, default_preprocess, eval_transform, train_transform
from mobilenets.data.transforms import IMAGENET_MEAN, normalise


@pytest.fixture
def photo() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8), "RGB")


def test_default_preprocess_follows_the_imagenet_convention():
    p = default_preprocess(224)
    assert p.resize == 256 and p.mean == IMAGENET_MEAN and p.interpolation == "bilinear"


def test_preprocess_round_trips_through_json():
    p = Preprocess(32, 36, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bicubic")
    assert Preprocess.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="unknown"):
        Preprocess.from_dict({**p.to_dict(), "crop_pct": 0.9})


def test_eval_transform_gives_normalised_float_crops(photo: Image.Image):
    out = eval_transform(default_preprocess(32))(photo)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert out.min() < 0 < out.max()


def test_normalise_equals_the_eval_transforms_last_steps_on_a_batch(photo: Image.Image):
    p = Preprocess(32, 36, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    pixels = torch.from_numpy(np.asarray(photo)).permute(2, 0, 1)
    batch = torch.stack([pixels, pixels.flip(-1)])
    to_float, standardise = v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(p.mean), list(p.std))
    expected = torch.stack([standardise(to_float(image)) for image in batch])
    before = batch.clone()
    torch.testing.assert_close(normalise(batch, p.mean, p.std), expected, rtol=0, atol=1e-6)
    assert torch.equal(batch, before)  # converted into a new tensor: the input is left as it was
    with pytest.raises(TypeError, match="uint8"):
        normalise(batch.float())


@pytest.mark.parametrize("augment", [
    Augment(),
    Augment(crop_scale=(0.08, 1.0), hflip=True),
    Augment(color_jitter=0.4),
    Augment(auto_augment="autoaugment"),
    Augment(auto_augment="randaugment"),
    Augment(random_erasing=1.0),
], ids=["default", "imagenet-crop-flip", "jitter", "autoaugment", "randaugment", "erasing"])
def test_train_transform_options_build_and_run(photo: Image.Image, augment: Augment):
    torch.manual_seed(0)
    out = train_transform(default_preprocess(24), augment)(photo)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32


def test_defaults_are_mild():
    steps = [type(t).__name__ for t in train_transform(default_preprocess(24), Augment()).transforms]
    assert steps == ["ToImage", "RandomResizedCrop", "ToDtype", "Normalize"]


@pytest.mark.parametrize("options", [
    {"crop_scale": (0.0, 1.0)}, {"crop_scale": (0.5, 1.5)}, {"crop_scale": (0.9, 0.5)}, {"color_jitter": -0.1},
    {"auto_augment": "trivialaugment"}, {"random_erasing": 2.0},
])
def test_bad_augment_values_are_refused(options: dict):
    with pytest.raises(ValueError):
        Augment(**options)


def test_bad_preprocess_values_are_refused():
    with pytest.raises(ValueError, match="interpolation"):
        Preprocess(32, 36, (0.5,) * 3, (0.5,) * 3, "lanczos")
    with pytest.raises(ValueError, match="resize"):
        Preprocess(32, 16, (0.5,) * 3, (0.5,) * 3)
