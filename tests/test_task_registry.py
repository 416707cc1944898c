"""The task and export-format registries: the built-in tasks are listed and found, a file's task is derived in one
place (old files that record none included), and a toy task and a toy format, each registered from this file
alone, run through training, loading, export and the server as the built-in ones do."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from mobilenets.deploy import ExportedModel, ExportFormat, check_request, export, list_formats, register_format
from mobilenets.engine import Task, TaskData, fit
from mobilenets.engine.config import TrainingOptions
from mobilenets.recipes import make_options, option, positive_int
from mobilenets.serve import Servable, create_app
from mobilenets.tasks import TaskDefinition, get_task, list_tasks, register_task, task_of
from mobilenets.tasks.classification import load_classifier
from mobilenets.weights.convert import read_weights
from mobilenets.weights.io import model_from_checkpoint

SIZE = 16  # the toy's images: dark or bright noise


def test_the_built_in_tasks_are_listed_and_found():
    assert list_tasks()[:2] == ["classification", "detection"]
    assert get_task("detection").noun == "detector" and get_task("classification").config.__name__ == "TrainConfig"
    with pytest.raises(ValueError, match=r"unknown task 'segmentation'; choose from classification, detection"):
        get_task("segmentation")


@pytest.mark.parametrize(("config", "meta", "task"), [
    ({"name": "mobilenet_v2"}, {"task": "detection"}, "detection"),  # what a file records wins
    ({"name": "centernet", "backbone": "mobilenet_v2"}, {}, "detection"),  # a detector saved before tasks were
    (None, {"category_ids": [1, 2], "classes": ["a", "b"]}, "detection"),  # an export of one
    ({"name": "mobilenet_v3_small"}, {}, "classification"),
    (None, {}, "classification"),  # torchvision's or timm's weights: a classifier
])
def test_a_files_task_is_derived_in_one_place(config, meta, task):
    assert task_of(config, meta) == task


class ToyNet(nn.Module):
    """Mean brightness -> two logits: the smallest network with a config that rebuilds it."""

    def __init__(self, name: str = "toy_net", channels: int = 4) -> None:
        super().__init__()
        self.config = {"name": name, "channels": channels}
        self.layers = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@dataclass
class ToyConfig(TrainingOptions):
    epochs: int = option(6, "training epochs", type=positive_int)
    batch_size: int = option(16, "images per step", type=positive_int)
    lr: float = option(0.05, "peak learning rate")
    channels: int = option(4, "the toy network's channels", type=positive_int)


def _images(count: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    noise = torch.rand(count, 3, SIZE, SIZE, generator=generator) * 0.5
    return TensorDataset(noise + labels.view(-1, 1, 1, 1) * 0.5, labels)


class ToyTask(Task):
    name = "toy"
    scores = ("accuracy",)
    best = "accuracy"
    score_label = "validation accuracy"

    def build_data(self, config: ToyConfig, progress: bool) -> TaskData:
        from mobilenets.data.wrappers import EpochSeeded

        return TaskData(train=EpochSeeded(_images(256, config.seed), lambda x, y: (x, y), config.seed),
                        val=_images(32, config.seed + 1), classes=["dark", "bright"], description="toy noise",
                        meta={"classes": ["dark", "bright"]}, built_in=True)

    def build_model(self, config: ToyConfig, data: TaskData) -> ToyNet:
        return ToyNet(channels=config.channels)

    def build_loss(self, config: ToyConfig, data: TaskData, model: nn.Module) -> nn.Module:
        return nn.CrossEntropyLoss()

    def evaluate(self, config, model, loader, device, data, *, amp, progress) -> dict[str, float]:
        right = total = loss = 0.0
        with torch.no_grad():
            for images, labels in loader:
                logits = model(images.to(device))
                loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
                right += (logits.argmax(1) == labels).sum().item()
                total += len(labels)
        return {"val_loss": loss / total, "accuracy": right / total}

    def describe_model(self, config, data) -> str:
        return f"toy net, {config.channels} channels"

    def describe_scores(self, row) -> str:
        return f"accuracy {row['accuracy']:.3f}"

    def summary(self, config, history, best) -> dict[str, Any]:
        return {"best_accuracy": best.get("accuracy")}


@dataclass
class ToyModel:
    model: nn.Module
    classes: list[str]
    source: Path | None = None


def _load(path: str | Path) -> ToyModel:
    if Path(path).suffix == ".onnx":
        from mobilenets.deploy import load_exported

        return _from_exported(load_exported(path))
    checkpoint = read_weights(path)
    return ToyModel(model_from_checkpoint(checkpoint, ToyNet).eval(), checkpoint.meta["classes"], Path(path))


def _from_exported(exported: ExportedModel) -> ToyModel:
    from mobilenets.deploy.runtime import ExportedNetwork

    return ToyModel(ExportedNetwork(exported), exported.metadata["classes"], exported.path)


def _export(checkpoint: str | Path, output: str | Path, *, format: str = "onnx", **options: Any) -> Path:
    toy = _load(checkpoint)
    return export(toy.model, format, output, resolution=SIZE, task="toy",
                  metadata={"task": "toy", "classes": toy.classes, "model": toy.model.config}, **options).path


class ServedToy(Servable):
    task = "toy"

    def __init__(self, toy: ToyModel) -> None:
        self.model, self.classes = toy.model, toy.classes

    def prepare(self, image: Image.Image, full_size: tuple[int, int]) -> tuple[torch.Tensor, None]:
        small = image.resize((SIZE, SIZE))
        return torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1), None

    def answer(self, images: torch.Tensor, contexts: list[Any]) -> list[dict[str, Any]]:
        logits = self.model(images.float() / 255)
        return [{"class": self.classes[i]} for i in logits.argmax(1).tolist()]


TOY = TaskDefinition(
    name="toy", noun="toy", summary="bright or dark noise", config=ToyConfig,
    make_config=lambda recipe=None, **options: make_options(ToyConfig, recipe, **options),
    train=lambda config, progress=True: fit(ToyTask(), config, progress=progress), load=_load,
    from_exported=_from_exported, export=_export, servable=lambda toy, **_: ServedToy(toy))


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    register_task(TOY)
    folder = tmp_path_factory.mktemp("toy") / "run"
    definition = get_task("toy")
    definition.train(definition.make_config(output=str(folder), seed=0), progress=False)
    return folder


def test_a_registered_task_trains_loads_exports_and_serves(toy_run, tmp_path):
    from fastapi.testclient import TestClient

    assert "toy" in list_tasks() and (toy_run / "metrics.csv").read_text().count("\n") == 7  # header + 6 epochs
    checkpoint = toy_run / "best.safetensors"
    definition = get_task(task_of(None, read_weights(checkpoint).meta))  # the engine recorded the task
    assert definition is TOY
    toy = definition.load(checkpoint)
    images = _images(8, seed=5).tensors[0]
    with torch.no_grad():
        eager = toy.model(images)
    assert (eager.argmax(1) == torch.arange(8) % 2).float().mean() >= 0.75  # it learned brightness

    exported = definition.export(checkpoint, tmp_path / "toy.onnx", dynamic_batch=True)
    assert torch.allclose(definition.load(exported).model(images), eager, atol=1e-4)
    with pytest.raises(ValueError, match=r"--int8 is not for a toy model \(no format takes it\)"):
        definition.export(checkpoint, tmp_path / "toy.onnx", int8=True)  # the rows refuse it, not the task

    bright = io.BytesIO()
    Image.new("RGB", (40, 30), (250, 250, 250)).save(bright, format="PNG")
    for served in (checkpoint, exported):  # a checkpoint is exported by its task's own export, then served
        with TestClient(create_app(served, max_batch_size=2)) as client:
            answer = client.post("/v1/predict", content=bright.getvalue(), headers={"Content-Type": "image/png"})
            assert answer.status_code == 200 and answer.json()["class"] == "bright"
            assert client.get("/health").json()["task"] == "toy"


class NpzModel(ExportedModel):
    """The toy format's runtime: the folded network's weights in an .npz, run by rebuilding it in PyTorch."""

    format = "npz"

    def __init__(self, path: Path) -> None:
        import json

        from mobilenets.models import build_model

        with np.load(path) as archive:
            metadata = json.loads(str(archive["metadata"]))
            state = {k.removeprefix("w/"): torch.from_numpy(archive[k]) for k in archive.files if k.startswith("w/")}
        self.network = build_model(**metadata["model"]).eval()
        self.network.load_state_dict(state)
        size = metadata["resolution"]
        super().__init__(path, (None, 3, size, size), metadata, output_shapes=[(None, self.network.num_classes)])

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [self.network(torch.from_numpy(batch)).numpy()]


def _write_npz(model: nn.Module, output: str | Path, *, resolution: int, metadata: dict | None = None,
               **_: Any) -> Path:
    import json

    state = {f"w/{k}": v.numpy() for k, v in model.state_dict().items()}
    with open(output, "wb") as file:
        np.savez(file, metadata=json.dumps({**(metadata or {}), "resolution": resolution}), **state)
    return Path(output)


def test_a_registered_format_is_one_row_a_writer_and_a_loader(classifier_run, tmp_path):
    from mobilenets.tasks.classification import export_classifier

    if "npz" not in {row.name for row in list_formats()}:
        register_format(ExportFormat("npz", ".npz", "weights as numpy arrays (a test's format)",
                                     {"classification": frozenset()}, _write_npz,
                                     lambda path, threads, spinning: NpzModel(path)))
    assert "npz" in {row.name for row in list_formats("classification")}
    assert "npz" not in {row.name for row in list_formats("detection")}
    checkpoint = classifier_run[0] / "best.safetensors"
    written = export_classifier(checkpoint, "npz", tmp_path / "classifier.npz").path
    eager, exported = load_classifier(checkpoint), load_classifier(written)  # opened by the row's loader
    assert exported.classes == eager.classes and exported.preprocess == eager.preprocess
    images = torch.randn(3, 3, eager.preprocess.image_size, eager.preprocess.image_size)
    with torch.no_grad():
        assert torch.allclose(exported.model(images), eager.model(images), atol=1e-5)
    with pytest.raises(ValueError, match=r"--dynamic-batch is not for --format npz"):
        check_request("npz", "classification", dynamic_batch=True)
    with pytest.raises(ValueError, match=r"unknown format 'npz'; choose from onnx, torchscript, pt2, executorch"):
        check_request("npz", "detection")
