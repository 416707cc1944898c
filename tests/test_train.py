"""Training end to end on tiny data: outputs, eval reproducing the logged metrics, resume after kill -9,
divergence handling, fine-tuning, corrupt files, and multi-process training."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CLASSIFIER_RUN as TINY
from PIL import Image
from safetensors.torch import load_file

import mobilenets
import mobilenets.cpu
from mobilenets.tasks.classification import TrainingError, evaluate, load_classifier, make_config, train
from mobilenets.weights import WeightsError

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path: Path, name: str = "run", **options) -> dict:
    return {**TINY, "output": str(tmp_path / name), **options}


def metrics(path: Path) -> list[dict[str, str]]:
    with open(path / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def finished_run(classifier_run):
    return classifier_run


def test_run_writes_every_output(finished_run):
    out, result = finished_run
    names = {p.name for p in out.iterdir()}
    assert {"last.pt", "best.safetensors", "metrics.csv", "curves.png", "summary.json", "config.yaml",
            "train.log"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert {"best_top1", "best_epoch", "epochs", "model", "train_images", "skipped_files", "seconds"} <= set(summary)
    assert summary["epochs"] == 2 and summary["train_images"] == 96
    assert summary["cpu"] == mobilenets.cpu.summary()  # where the figures were made: they vary with the ISA
    rows = metrics(out)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "val_loss", "top1", "top5", "images_per_second", "seconds"]


def test_eval_of_saved_checkpoint_reproduces_logged_metrics(finished_run):
    """Catches lost BN running statistics, wrong preprocessing or class order between train and eval."""
    out, result = finished_run
    best = next(r for r in metrics(out) if int(r["epoch"]) == result.summary["best_epoch"])
    for checkpoint in ("best.safetensors", "last.pt"):
        report = evaluate(out / checkpoint, progress=False, workers=0)
        if checkpoint == "last.pt":
            best = metrics(out)[-1]
        assert report["top1"] == pytest.approx(float(best["top1"]), abs=1e-9)
        assert report["loss"] == pytest.approx(float(best["val_loss"]), rel=1e-5)
        assert set(report["per_class"]) == set(load_classifier(out / checkpoint).classes)


def test_same_seed_same_weights(tmp_path, finished_run):
    out, _ = finished_run
    again = train(progress=False, **tiny(tmp_path))
    reference = torch.load(out / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(again.model.state_dict()[k].cpu(), v) for k, v in reference.items())


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mobilenets", *args]


def _train_args(output: Path) -> list[str]:
    config = output.parent / "recipe.yaml"
    config.write_text("\n".join(f"{k}: {v}" for k, v in {**TINY, "epochs": 4, "synthetic_train_size": 320}.items()))
    return _cli("train", "--config", str(config), "--output", str(output))


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_train_args(whole), check=True, capture_output=True)
    process = subprocess.Popen(_train_args(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    epochs_done = torch.load(killed / "last.pt", weights_only=True)["epoch"]
    assert 1 <= epochs_done < 4, "the kill must interrupt the run"
    subprocess.run([*_train_args(killed), "--resume"], check=True, capture_output=True)
    final_whole = torch.load(whole / "last.pt", weights_only=True)
    final_killed = torch.load(killed / "last.pt", weights_only=True)
    assert all(torch.equal(final_whole["model"][k], v) for k, v in final_killed["model"].items())
    timing = {"images_per_second", "seconds"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in metrics(killed)] == \
           [{k: v for k, v in r.items() if k not in timing} for r in metrics(whole)]
    assert load_file(str(killed / "best.safetensors")).keys() == load_file(str(whole / "best.safetensors")).keys()


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = torch.nn.CrossEntropyLoss.forward

    def diverging(self, logits, target):
        calls["n"] += 1
        loss = real(self, logits, target)
        return loss * float("nan") if calls["n"] > 6 else loss  # epoch 1 has 6 steps: epoch 2 diverges

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", diverging)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"epoch 2, step 1: the loss is nan.*last good checkpoint is .*last\.pt"):
        train(progress=False, **tiny(tmp_path))
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1


def _image_folder(root: Path, classes: tuple[str, ...], per_class: int = 12) -> Path:
    torch.manual_seed(0)
    for split in ("train", "val"):
        for i, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for j in range(per_class):
                pixels = (torch.rand(40, 40, 3) * 60 + 60 * i).clamp(0, 255).byte().numpy()
                Image.fromarray(pixels).save(folder / f"{j}.png")
    return root


def test_fine_tuning_reinitialises_the_classifier_and_corrupt_files_are_skipped_counted_and_logged(
        tmp_path, finished_run):
    out, _ = finished_run
    data = _image_folder(tmp_path / "data", ("a", "b", "c"))
    (data / "train" / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (data / "train" / "c" / "empty.png").write_bytes(b"")
    result = train(progress=False, **tiny(tmp_path, data=str(data), epochs=1, batch_size=8, freeze_backbone=True,
                                         pretrained=str(out / "best.safetensors")))
    assert result.summary["skipped_files"] == 2
    log = (tmp_path / "run" / "train.log").read_text()
    assert "broken.jpg" in log and "empty.png" in log
    assert "classifier has 10 classes and this data 3: the classifier is re-initialised" in log
    pretrained = load_file(str(out / "best.safetensors"))
    tuned = result.model.state_dict()
    assert torch.equal(tuned["features.3.depthwise.0.weight"].cpu(), pretrained["features.3.depthwise.0.weight"])
    assert tuned["head.fc.weight"].shape[0] == 3
    assert load_classifier(tmp_path / "run" / "best.safetensors").classes == ["a", "b", "c"]


@pytest.mark.parametrize(("option", "message"), [
    ({"width": 0.5}, "a mobilenet_v3_small with width_mult 0.25, but this run asks for 0.5 (pass --width 0.25)"),
    ({"model": "mobilenet_v2"}, "with name mobilenet_v3_small, but this run asks for mobilenet_v2 "
                                "(pass --model mobilenet_v3_small)"),
])
def test_pretrained_weights_of_another_architecture_are_refused_naming_both(tmp_path, finished_run, option,
                                                                           message):
    out, _ = finished_run
    with pytest.raises(WeightsError) as info:
        train(progress=False, **tiny(tmp_path, pretrained=str(out / "best.safetensors"), **option))
    assert message in str(info.value) and str(out / "best.safetensors") in str(info.value)
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(recipe):
    config = make_config(recipe)
    assert config.model in mobilenets.list_models()


def test_command_line_overrides_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 7\nlr: 0.5\nmodel: mobilenet_v1\n")
    config = make_config(recipe, epochs=2)
    assert (config.epochs, config.lr, config.model) == (2, 0.5, "mobilenet_v1")


@pytest.mark.parametrize(("args", "message"), [
    (["--epochs", "-1"], "--epochs: must be an integer >= 1"),
    (["--data", "/no/such/folder"], "data: /no/such/folder: no such folder"),
    (["--model", "resnet50"], "invalid choice: 'resnet50'"),
    (["--config", "/no/such.yaml"], "/no/such.yaml: no such file"),
    (["--val-split", "1.5"], "val_split: must be between 0 and 1"),
])
def test_bad_training_options_exit_2_with_one_line(args, message):
    done = subprocess.run(_cli("train", *args), capture_output=True, text=True)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_empty_class_folder_is_named(tmp_path):
    data = _image_folder(tmp_path / "data", ("a", "b"))
    (data / "train" / "c").mkdir()
    (data / "val" / "c").mkdir()
    done = subprocess.run(_cli("train", "--data", str(data), "--output", str(tmp_path / "o")),
                          capture_output=True, text=True)
    assert done.returncode == 2 and str(data / "train" / "c") in done.stderr and "Traceback" not in done.stderr


def test_eval_and_predict_commands(tmp_path, finished_run):
    out, _ = finished_run
    done = subprocess.run(_cli("eval", "--checkpoint", str(out / "best.safetensors"), "--json", "--output",
                               str(tmp_path)), capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert {"top1", "top5", "per_class"} <= set(report) and (tmp_path / "confusion.png").is_file()
    good = tmp_path / "good.png"
    Image.new("RGB", (50, 50), "red").save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    done = subprocess.run(_cli("predict", "--checkpoint", str(out / "best.safetensors"), str(good), str(bad),
                               str(tmp_path / "missing.png"), "--json", "--topk", "3"), capture_output=True, text=True)
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["path"] for r in lines] == [str(good)] and len(lines[0]["predictions"]) == 3
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 2 and "bad.jpg" in errors[0] and "missing.png" in errors[1]


def test_eval_refuses_a_pickle_that_runs_code(tmp_path):
    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    evil = tmp_path / "last.pt"
    torch.save({"format": "x", "model": RunsCode()}, evil)
    done = subprocess.run(_cli("eval", "--checkpoint", str(evil)), capture_output=True, text=True)
    assert done.returncode == 2 and not (tmp_path / "pwned").exists()


DDP_SCRIPT = """
import os, sys, torch
from mobilenets.tasks.classification import train
options = dict(model="mobilenet_v3_small", width=0.25, image_size=32, synthetic_train_size=64,
               synthetic_val_size=16, batch_size=16, epochs=1, workers=0, output=sys.argv[1])
result = train(progress=False, **options)
torch.save(result.model.state_dict(), f"{sys.argv[1]}/rank{os.environ['RANK']}.pt")
"""


def test_two_process_training_ends_with_identical_weights(tmp_path):
    script = tmp_path.with_name(f"{tmp_path.name}-ddp.py")  # outside the run folder, which starts empty
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    str(script), str(tmp_path)], check=True, capture_output=True, env=env, timeout=300)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert (tmp_path / "last.pt").is_file() and not list(tmp_path.glob("*rank1*.tmp"))


def test_int8_export_of_a_checkpoint_reports_accuracy_on_its_validation_split(finished_run, tmp_path, capsys):
    from mobilenets.cli import main

    out, result = finished_run
    assert main(["export", "--checkpoint", str(out / "best.safetensors"), "--format", "onnx", "--int8", "--output",
                 str(tmp_path / "int8.onnx")]) == 0
    report = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("int8 vs fp32"))
    assert "40 images of built-in synthetic shapes, validation split" in report
    fp32_top1 = float(report.split("top-1 fp32 ")[1].split()[0])
    assert abs(fp32_top1 - result.summary["best_top1"]) < 1e-3  # the exported fp32 model is the best checkpoint
    # the int8 file's metadata holds plain text beside the JSON: eval still reads its classes and preprocessing
    assert main(["eval", "--model", str(tmp_path / "int8.onnx"), "--json", "--output", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 40


def test_int8_export_after_quantization_aware_finetuning(finished_run, tmp_path, capsys):
    from mobilenets.cli import main

    out, _ = finished_run
    export = ["export", "--checkpoint", str(out / "best.safetensors"), "--format", "onnx", "--output",
              str(tmp_path / "int8.onnx"), "--qat-epochs", "1"]
    assert main([*export, "--int8"]) == 0
    captured = capsys.readouterr()
    assert "int8-aware fine-tuning 1/1" in captured.err  # the progress bar
    assert any(line.startswith("int8 vs fp32 on 40 images") for line in captured.out.splitlines())
    assert main(export) == 2 and "--qat-epochs needs --int8" in capsys.readouterr().err
    assert main([*export[:-1], "-1", "--int8"]) == 2
    assert "--qat-epochs must be 0 or more, got -1" in capsys.readouterr().err


def test_metrics_csv_every_epoch_curves_at_most_every_interval_and_at_the_end(tmp_path, monkeypatch):
    from mobilenets.engine import run_files as runs

    drawn = []
    monkeypatch.setattr(runs, "plot_curves", lambda history, path, **kw: drawn.append(len(history)))
    files = runs.MetricsFiles(tmp_path, ["epoch", "top1"], ("top1",), "accuracy", plot_every_s=3600)
    history = []
    for epoch in range(1, 4):
        history.append({"epoch": epoch, "top1": epoch / 10})
        files.update(history)
        assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 1 + epoch
    files.finish(history)
    files.finish(history)
    assert drawn == [1, 3]  # the first epoch at once, then only the end
