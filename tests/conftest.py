"""Shared test helpers: small, seeded inputs and models whose every layer shows in their output."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d


def nontrivial(model: nn.Module, seed: int = 0, size: int = 64) -> nn.Module:
    """Give every weight of `model` (a classifier or a detector) trained-like values whose output depends on the
    input, so a parity check sees every layer: returns the model in eval mode, deterministic from `seed`.

    - conv and linear weights: He-normal over the fan-in, std sqrt(2 / fan_in) (the gain of ReLU, ReLU6 and
      hard-swish; a depthwise conv's fan-in is kernel x kernel); biases N(0, 0.1);
    - norm affine terms: weight U(0.5, 1.5), bias N(1, 0.2): most units on the passing side of their activation.
      With biases around 0 a batch-normalised ReLU network amplifies small differences about 1.2x a layer (V1 70x,
      a CenterNet 200x): fp32 rounding alone then reaches 1e-4 of the output and int8 rounding half the signal;
      around 1 fp32 rounding stays near 5e-6 of the output;
    - norm statistics: each layer's own input's mean and variance in one eval-mode pass over random `size` px
      images (so the signal neither dies nor blows up through the depth; pass the size the test uses, as V3's
      output scale changes with it), then moved off them: mean by N(0, 0.2) input stds, variance times
      U(2/3, 3/2) and at least 0.01;
    - the last conv or linear layer of each output scaled so that output's std is 1.

    Then it asserts that two random inputs give outputs that differ by at least 10% of the output's std.
    """
    g = torch.Generator().manual_seed(seed)
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, _NORMS)]
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    covered = set()
    with torch.no_grad():
        for m in layers:
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2 / m.weight[0].numel()))
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            covered |= {id(p) for p in m.parameters(recurse=False)}
        for m in norms:
            if m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2 + 1)
            covered |= {id(p) for p in m.parameters(recurse=False)}
        if left := [name for name, p in model.named_parameters() if id(p) not in covered]:
            raise TypeError(f"nontrivial() does not know how to set {left[0]} ({len(left)} parameters left)")

        def set_statistics(norm: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].transpose(0, 1).flatten(1)  # channels x (images and positions)
            mean, var = x.mean(1), x.var(1)
            norm.running_mean.copy_(mean + torch.randn(mean.shape, generator=g) * 0.2 * var.sqrt())
            norm.running_var.copy_((var * 1.5 ** (2 * torch.rand(var.shape, generator=g) - 1)).clamp_min(0.01))

        count = max(2, 2 * round(4 * (64 / size) ** 2))  # 8 at 64 px: as many positions at stride 32 at any size

        def images() -> torch.Tensor:
            return torch.randn(count, 3, size, size, generator=g)

        produced: list[tuple[nn.Module, torch.Tensor]] = []  # kept alive, so `is` below cannot meet a reused id
        with _one_thread():  # passes this small only wait on a second thread (seconds on a busy machine)
            with _hooked(norms, set_statistics, pre=True):
                model(images())
            with _hooked(layers, lambda m, args, out: produced.append((m, out))):
                outputs = _tensors(model(images()))
            for i, out in enumerate(outputs):
                last = next((m for m, t in reversed(produced) if t is out), None)
                if last is None:
                    raise TypeError(f"nontrivial(): output {i} does not come straight from a conv or linear layer")
                scale = out.std()
                last.weight.div_(scale)
                if last.bias is not None:
                    last.bias.div_(scale)
            outputs = _tensors(model(images()))
    for i, out in enumerate(outputs):  # two inputs: the first and the second half of the batch
        change = (out[: count // 2] - out[count // 2 :]).std()
        assert torch.isfinite(out).all() and change >= 0.1 * out.std(), \
            f"output {i} hardly depends on the input: std {out.std():.3g}, between two inputs {change:.3g}"
    return model


_NORMS = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)


@contextlib.contextmanager
def _hooked(modules: list[nn.Module], hook: Callable, *, pre: bool = False) -> Iterator[None]:
    handles = [m.register_forward_pre_hook(hook) if pre else m.register_forward_hook(hook) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _tensors(output: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (output,) if isinstance(output, torch.Tensor) else tuple(output)


@pytest.fixture
def image_batch() -> torch.Tensor:
    return torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))


def error_to_signal(approx, exact) -> float:
    """RMS of `approx - exact` over the RMS of what in `exact` depends on the input (`exact` less its batch mean):
    about 0.3 for a good int8 copy of a `nontrivial` model, about 1 for a badly calibrated one, whose agreement in
    top-1 can still be high where one class dominates."""
    approx, exact = np.asarray(approx, np.float64), np.asarray(exact, np.float64)
    return float(np.sqrt(((approx - exact) ** 2).mean() / ((exact - exact.mean(0)) ** 2).mean()))


def int8_weights(path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(int8 values, scale) of each weight of a QDQ ONNX model: the DequantizeLinear inputs stored as int8."""
    import onnx

    graph = onnx.load(str(path)).graph
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    return [(stored[n.input[0]], stored[n.input[1]]) for n in graph.node
            if n.op_type == "DequantizeLinear" and stored.get(n.input[0], np.zeros(0)).dtype == np.int8]


def on_cpu(monkeypatch, flags: tuple[str, ...], architecture: str = "x86_64") -> None:
    """Make `mobilenets.cpu.describe` report a CPU of `architecture` with instruction-set `flags`."""
    from mobilenets import cpu

    monkeypatch.setattr(cpu, "describe", lambda: cpu.CpuInfo("test CPU", architecture, flags))


# The trained runs the end-to-end tests share (session-wide: each is trained once, whatever uses it).
CLASSIFIER_RUN = {"model": "mobilenet_v3_small", "width": 0.25, "image_size": 32, "synthetic_train_size": 96,
                  "synthetic_val_size": 40, "batch_size": 16, "epochs": 2, "workers": 0, "lr": 0.01,
                  "warmup_epochs": 0.5}
DETECTOR_RUN = {"backbone": "mobilenet_v3_small", "width": 0.5, "image_size": 96, "synthetic_train_size": 48,
                "synthetic_val_size": 16, "batch_size": 8, "epochs": 2, "workers": 0, "lr": 0.004,
                "warmup_epochs": 0.5, "ema": True, "ema_decay": 0.9}  # the engine's EMA, on the detector too


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory):
    """A finished classification run of CLASSIFIER_RUN: (its output folder, its TrainResult)."""
    from mobilenets.tasks.classification import train

    out = tmp_path_factory.mktemp("classifier") / "run"
    return out, train(progress=False, output=str(out), **CLASSIFIER_RUN)


@pytest.fixture(scope="session")
def detector_run(tmp_path_factory):
    """A finished detection run of DETECTOR_RUN: (its output folder, its TrainResult)."""
    from mobilenets.tasks.detection import train_detector

    out = tmp_path_factory.mktemp("detector") / "run"
    return out, train_detector(progress=False, output=str(out), **DETECTOR_RUN)
