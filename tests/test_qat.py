"""Quantization-aware fine-tuning: weights end on onnxruntime's int8 grid, the simulation is gone afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import error_to_signal, int8_weights, nontrivial, on_cpu
from torch import nn
from torch.nn.utils import parametrize

import mobilenets
from mobilenets.deploy.qat import finetune_for_int8, prepare_for_int8

pytest.importorskip("onnx")


def tiny_classifier() -> nn.Module:
    """A small classifier with trained-like weights, for 32 px inputs: outputs of about 1 that depend on the input
    (a freshly built one's are near zero and nearly constant)."""
    torch.manual_seed(0)  # for the dropout of fine-tuning
    return nontrivial(mobilenets.create_model("mobilenet_v3_small", width_mult=0.35, num_classes=4), size=32)


def batches(count: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 32, 32, generator=generator), torch.randint(0, 4, (8,), generator=generator))
            for _ in range(count)]


def grid_steps(weight: torch.Tensor, levels: int) -> torch.Tensor:
    """Each weight divided by its output channel's step (max |w| / levels): integers when on the grid."""
    step = weight.abs().amax(dim=tuple(range(1, weight.dim())), keepdim=True) / levels
    return weight / step


@pytest.mark.parametrize(("reduce_range", "levels"), [(True, 64), (False, 127)])
def test_finetuned_weights_lie_on_the_int8_grid_and_the_simulation_is_removed(reduce_range, levels):
    model = tiny_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = finetune_for_int8(model, batches(), epochs=1, observe_steps=1, reduce_range=reduce_range,
                              progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the input model is untouched
    layers = [m for m in tuned.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) > 30 and not any(isinstance(m, nn.BatchNorm2d) for m in tuned.modules())
    for layer in layers:
        steps = grid_steps(layer.weight.detach(), levels)
        assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= levels + 1e-3
        assert not parametrize.is_parametrized(layer) and not hasattr(layer, "input_quant")
        assert not layer._forward_pre_hooks
    assert not tuned.training
    x = batches(1)[0][0]
    with torch.no_grad():
        assert torch.equal(tuned(x), tuned(x))
        assert not torch.allclose(tuned(x), model.eval()(x), rtol=1e-2, atol=0)  # it was trained


def test_the_prepared_model_simulates_int8():
    model = tiny_classifier().eval()
    prepared = prepare_for_int8(model, reduce_range=True).eval()  # the coarser grid, on every CPU
    x = batches(1)[0][0]
    with torch.no_grad():
        simulated, exact = prepared(x), model(x)
    assert not torch.equal(simulated, exact)  # weights and inputs rounded
    assert (simulated.argmax(1) == exact.argmax(1)).float().mean() >= 0.75  # but still nearly the same function
    assert error_to_signal(simulated, exact) <= 0.5  # about 0.2 (a badly calibrated int8 copy: about 1)


def test_a_prepared_model_is_not_prepared_again():
    with pytest.raises(ValueError, match="already prepared"):
        prepare_for_int8(prepare_for_int8(tiny_classifier()))


def test_finishing_removes_only_the_simulation_hooks():
    from mobilenets.deploy.qat import finish_int8_training

    prepared = prepare_for_int8(tiny_classifier())
    layer = next(m for m in prepared.modules() if isinstance(m, nn.Conv2d))
    seen = []
    layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    finished = finish_int8_training(prepared)
    assert len(layer._forward_pre_hooks) == 1 and not hasattr(layer, "input_quant_hook")
    finished(batches(1)[0][0])
    assert seen == [torch.Size([8, 3, 32, 32])]  # the caller's hook still runs


def grid_levels(prepared: nn.Module) -> list[int]:
    """The levels of each weight grid `prepare_for_int8` put on `prepared`."""
    return [m.parametrizations.weight[0].levels for m in prepared.modules() if parametrize.is_parametrized(m)]


@pytest.mark.parametrize(("flags", "levels", "other"), [(("avx2",), 64, 127), (("avx2", "avx512_vnni"), 127, 64)])
def test_the_default_grid_is_the_one_chosen_for_this_cpu(monkeypatch, flags, levels, other):
    on_cpu(monkeypatch, flags)
    chosen = grid_levels(prepare_for_int8(tiny_classifier()))
    assert len(chosen) > 30 and set(chosen) == {levels}
    assert set(grid_levels(prepare_for_int8(tiny_classifier(), reduce_range=other == 64))) == {other}  # asked: wins


@pytest.mark.parametrize("flags", [("avx2",), ("avx2", "avx512_vnni")])
def test_quantizing_the_finetuned_model_keeps_its_weights_exactly(tmp_path, monkeypatch, flags):
    """With the defaults on a CPU with VNNI and on one without, fine-tuning and quantizing use the same grid."""
    from mobilenets.data.transforms import default_preprocess
    from mobilenets.deploy import calibration_batches, export_graph, quantize

    on_cpu(monkeypatch, flags)
    tuned = finetune_for_int8(tiny_classifier(), batches(), epochs=1, observe_steps=1, progress=False)
    fp32 = export_graph(tuned, "onnx", tmp_path / "fp32.onnx", resolution=32)
    int8 = quantize(fp32, tmp_path / "int8.onnx", calibration_batches(None, default_preprocess(32), images=8))
    dequantized = [q.astype(np.float32) * (scale.reshape(-1, *[1] * (q.ndim - 1)) if scale.ndim else scale)
                   for q, scale in int8_weights(int8)]
    weights = [m.weight.detach().numpy() for m in tuned.modules() if isinstance(m, nn.Conv2d)]
    assert len(dequantized) >= len(weights)
    matched = [any(d.shape == w.shape and np.allclose(d, w, rtol=1e-5, atol=1e-7) for d in dequantized)
               for w in weights]
    assert all(matched)
