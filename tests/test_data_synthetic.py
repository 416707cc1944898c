"""SyntheticShapes: deterministic per (seed, split, index), balanced, RGB, and too hard for a linear model."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from mobilenets.data import SyntheticShapes


def pixels(dataset: SyntheticShapes, index: int) -> bytes:
    return dataset[index][0].tobytes()


def test_images_are_rgb_of_the_requested_size():
    for size in (32, 64):
        image, label = SyntheticShapes("val", size=size, length=3)[2]
        assert image.mode == "RGB" and image.size == (size, size)
        assert label == 2


def test_default_lengths_and_class_names():
    assert len(SyntheticShapes("train")) == 10_000 and len(SyntheticShapes("val")) == 2_000
    classes = SyntheticShapes().classes
    assert len(classes) == len(set(classes)) == 10


def test_same_seed_gives_identical_pixels_in_any_access_order():
    forward = SyntheticShapes(length=20, seed=3)
    backward = SyntheticShapes(length=20, seed=3)
    late_first = [pixels(backward, i) for i in reversed(range(20))][::-1]
    assert [pixels(forward, i) for i in range(20)] == late_first


def test_different_seeds_and_splits_give_different_images():
    train, val, other_seed = SyntheticShapes("train"), SyntheticShapes("val"), SyntheticShapes("train", seed=1)
    assert pixels(train, 0) != pixels(val, 0)
    assert pixels(train, 0) != pixels(other_seed, 0)
    assert len({pixels(train, i) for i in range(10)}) == 10


def test_labels_are_balanced():
    dataset = SyntheticShapes("val", size=16, length=200)
    counts = Counter(dataset[i][1] for i in range(len(dataset)))
    assert sorted(counts) == list(range(10)) and set(counts.values()) == {20}


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes("test")
    with pytest.raises(IndexError):
        SyntheticShapes(length=5)[5]


def flattened(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = SyntheticShapes(split, size=32, length=n)
    images = np.stack([np.asarray(dataset[i][0]) for i in range(n)])
    return torch.from_numpy(images).flatten(1).float() / 255, torch.tensor([dataset[i][1] for i in range(n)])


def test_linear_model_on_pixels_is_weak():
    """Logistic regression on raw pixels stays far below what a CNN reaches (measured: about chance, 0.10)."""
    x_train, y_train = flattened("train", 3000)
    x_val, y_val = flattened("val", 1000)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-3
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    torch.manual_seed(0)
    linear = nn.Linear(x_train.shape[1], 10)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=150, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(linear(x_train), y_train) + 1e-4 * linear.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        val_accuracy = (linear(x_val).argmax(1) == y_val).float().mean().item()
        train_accuracy = (linear(x_train).argmax(1) == y_train).float().mean().item()
    assert train_accuracy > 0.5  # the fit itself worked
    assert val_accuracy < 0.6
