"""The engine is task-neutral: a toy task of a dozen lines trains through `fit` with EMA, writes every run file,
resumes only its own runs, and its flags come from its config's fields."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mobilenets.data.wrappers import EpochSeeded
from mobilenets.engine import Task, TaskData, TrainingOptions, fit
from mobilenets.engine.run_files import RunFolderError
from mobilenets.recipes import ConfigError, add_options, option, options_given
from mobilenets.tasks.classification import TrainConfig
from mobilenets.tasks.detection.config import DetectConfig
from mobilenets.weights import WeightsError


@dataclasses.dataclass
class ToyConfig(TrainingOptions):
    points: int = option(256, "training points")


class Toy(Task):
    """Which side of a line a 2-D point lies on, with a linear classifier."""

    name, scores, best, score_label = "toy", ("accuracy",), "accuracy", "accuracy"

    def build_data(self, config, progress):
        x = torch.randn(config.points, 2, generator=torch.Generator().manual_seed(config.seed))
        points = TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())
        return TaskData(train=EpochSeeded(points, lambda p, y: (p, y), config.seed), val=points,
                        classes=["below", "above"], description=f"{config.points} points", meta={}, built_in=True)

    def build_model(self, config, data):
        model = nn.Sequential(nn.Linear(2, 2))
        model.config = {"name": "toy"}
        return model

    def build_loss(self, config, data, model):
        return nn.CrossEntropyLoss()

    def evaluate(self, config, model, loader, device, data, *, amp, progress):
        x, y = (torch.cat(t) for t in zip(*loader, strict=True))
        with torch.no_grad():
            logits = model(x)
        return {"val_loss": nn.functional.cross_entropy(logits, y).item(),
                "accuracy": (logits.argmax(1) == y).float().mean().item()}

    def describe_model(self, config, data):
        return "a linear classifier"

    def describe_scores(self, row):
        return f"accuracy {row['accuracy']:.3f}"

    def summary(self, config, history, best):
        return {"best_accuracy": best.get("accuracy")}


def toy_config(tmp_path, **options) -> ToyConfig:
    return ToyConfig(**{"epochs": 3, "batch_size": 32, "lr": 0.1, "channels_last": False, "ema": True,
                        "ema_decay": 0.9, "output": str(tmp_path / "toy"), **options})


def test_a_toy_task_trains_with_ema_and_writes_every_run_file(tmp_path):
    result = fit(Toy(), toy_config(tmp_path), progress=False)
    out = tmp_path / "toy"
    assert {"last.pt", "best.safetensors", "metrics.csv", "summary.json", "config.yaml", "train.log"} <= \
        {p.name for p in out.iterdir()}
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "val_loss", "accuracy", "images_per_second", "seconds"]
    assert len(rows) == 3 and float(rows[-1]["accuracy"]) > 0.9
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_accuracy"] == max(float(r["accuracy"]) for r in rows)
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["task"] == "toy" and "model_ema" in state  # the EMA is kept and resumable
    assert result.summary["best_epoch"] == state["best_epoch"]


def test_resume_refuses_another_tasks_run_and_a_changed_option(tmp_path):
    fit(Toy(), toy_config(tmp_path, epochs=1), progress=False)
    with pytest.raises(ConfigError, match=r"cannot resume with a different lr \(0\.1 in the run, 0\.2 now\)"):
        fit(Toy(), toy_config(tmp_path, epochs=1, lr=0.2, resume=True), progress=False)
    other = type("Other", (Toy,), {"name": "other"})()
    with pytest.raises(WeightsError, match=r"the checkpoint of a toy run, not of a other run"):
        fit(other, toy_config(tmp_path, epochs=1, resume=True), progress=False)


@pytest.mark.parametrize("kind", [TrainConfig, DetectConfig, ToyConfig])
def test_every_config_field_is_a_flag(kind):
    parser = argparse.ArgumentParser()
    add_options(parser, kind)
    fields = {f.name for f in dataclasses.fields(kind)}
    flags = {a.dest for a in parser._actions if a.dest != "help"}
    assert flags == fields
    args = parser.parse_args(["--epochs", "5", "--no-channels-last"])
    assert options_given(args, kind) == {"epochs": 5, "channels_last": False}


def test_a_second_run_never_replaces_the_first_unless_told(tmp_path):
    first = fit(Toy(), toy_config(tmp_path, epochs=1), progress=False)
    kept = (tmp_path / "toy" / "best.safetensors").read_bytes()
    second = fit(Toy(), toy_config(tmp_path, epochs=1, seed=1), progress=False)
    assert (first.output, second.output) == (tmp_path / "toy", tmp_path / "toy2")
    assert (tmp_path / "toy" / "best.safetensors").read_bytes() == kept
    assert json.loads((tmp_path / "toy2" / "summary.json").read_text())["output"] == str(tmp_path / "toy2")
    again = fit(Toy(), toy_config(tmp_path, epochs=1, seed=2, exist_ok=True), progress=False)
    assert again.output == tmp_path / "toy" and (tmp_path / "toy" / "best.safetensors").read_bytes() != kept
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RunFolderError, match=r"output: .*file is a file, not a folder"):
        fit(Toy(), toy_config(tmp_path, output=str(tmp_path / "file")), progress=False)


def test_a_recipe_kept_in_the_output_folder_is_not_written_over(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "config.yaml").write_text("epochs: 1\n")
    fit(Toy(), toy_config(tmp_path, epochs=1), progress=False)
    assert (folder / "config.yaml").read_text() == "epochs: 1\n" and sorted(p.name for p in folder.iterdir()) == [
        "config.yaml"]
    assert (tmp_path / "toy2" / "last.pt").is_file()


def test_a_run_folder_in_use_is_refused_naming_its_holder(tmp_path):
    import fcntl

    folder = tmp_path / "toy"
    folder.mkdir()
    with open(folder / ".lock", "w") as held:
        held.write("pid 12345")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RunFolderError, match=r"toy: another run \(pid 12345\) is writing here"):
            fit(Toy(), toy_config(tmp_path, exist_ok=True), progress=False)
    assert not (folder / "last.pt").exists()


def test_a_killed_runs_half_written_files_are_cleaned_and_outputs_share_one_mode(tmp_path):
    import os

    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / ".last.pt.4242.tmp").write_bytes(b"half")
    fit(Toy(), toy_config(tmp_path, epochs=1), progress=False)
    assert not list(folder.glob(".*.tmp"))
    modes = {name: os.stat(folder / name).st_mode & 0o777 for name in ("best.safetensors", "last.pt", "metrics.csv")}
    assert len(set(modes.values())) == 1, modes


def test_small_data_too_many_workers_and_one_class_are_said_and_trained_on(tmp_path, caplog, monkeypatch):
    import logging

    from PIL import Image

    from mobilenets import cpu
    from mobilenets.engine import trainer
    from mobilenets.tasks.classification.task import CLASSIFICATION

    monkeypatch.setattr(cpu, "available_cores", lambda: 2)
    monkeypatch.setattr(trainer, "DataLoader", lambda *args, **kwargs: (kwargs["num_workers"], kwargs["batch_size"]))
    data = Toy().build_data(toy_config(tmp_path, points=20), progress=False)
    with caplog.at_level(logging.WARNING, logger="mobilenets"):
        _, train, _ = trainer._loaders(toy_config(tmp_path, workers=64), data, Toy(), trainer.Distributed(),
                                       torch.device("cpu"))
    assert train == (2, 20)  # the cores, and the whole (small) data as one batch
    assert "20 training images are fewer than one batch of 32: batches of 20" in caplog.text
    assert "64 data-loading workers on 2 cores would only contend: using 2" in caplog.text
    for split in ("train", "val"):
        (tmp_path / "one" / split / "cat").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "one" / split / "cat" / "a.png")
    with caplog.at_level(logging.WARNING, logger="mobilenets"):
        CLASSIFICATION.build_data(TrainConfig(data=str(tmp_path / "one")), progress=False)
    assert "has one class (cat): every prediction is right and the accuracy means nothing" in caplog.text


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder(tmp_path):
    class Broken(Toy):
        def build_model(self, config, data):
            raise ValueError("no model today")

    with pytest.raises(ValueError, match="no model today"):
        fit(Broken(), toy_config(tmp_path), progress=False)
    assert not (tmp_path / "toy").exists()
    fit(Toy(), toy_config(tmp_path, epochs=1), progress=False)
    with pytest.raises(ValueError, match="no model today"):  # a folder with a run is kept as it was
        fit(Broken(), toy_config(tmp_path, exist_ok=True), progress=False)
    assert {p.name for p in (tmp_path / "toy").iterdir()} >= {"last.pt", "best.safetensors", "metrics.csv"}


def test_a_recipe_key_given_twice_is_refused_but_yaml_merge_keys_load(tmp_path):
    from mobilenets.recipes import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("<<: {epochs: 1, lr: 0.05}\nlr: 0.1\n")
    assert load_recipe(recipe, TrainConfig) == {"epochs": 1, "lr": 0.1}
    for text, repeated in [("epochs: 1\nepochs: 2\n", "'epochs' is given twice"),
                           ("warmup-epochs: 1\nwarmup_epochs: 2\n", r"'warmup_epochs' is given twice \(with dashes")]:
        recipe.write_text(text)
        with pytest.raises(ConfigError, match=repeated):
            load_recipe(recipe, TrainConfig)
