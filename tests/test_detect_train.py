"""Detection end to end on tiny data: the overfit check, run outputs, eval reproducing the logged AP and
re-evaluation of saved results, resume after kill -9, COCO folders, pretrained backbones, export, predict."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DETECTOR_RUN as TINY
from PIL import Image

import mobilenets
from mobilenets.tasks.detection import train_detector
from mobilenets.tasks.detection.checkpoint import load_detector
from mobilenets.tasks.detection.evaluate import coco_evaluate
from mobilenets.tasks.detection.synthetic import SyntheticDetection, write_coco


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mobilenets", "detect", *args], capture_output=True, text=True)


@pytest.fixture
def tiny_recipe(tmp_path) -> list[str]:
    """`--config` with the tiny settings, as a user would keep them."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("\n".join(f"{k}: {v}" for k, v in TINY.items()))
    return ["--config", str(recipe)]


@pytest.fixture
def finished_run(detector_run):
    return detector_run


def test_run_writes_every_output(finished_run):
    out, _ = finished_run
    for name in ("last.pt", "best.safetensors", "metrics.csv", "curves.png", "summary.json", "config.yaml",
                 "train.log"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert {"map", "map50", "best_epoch", "classes"} <= set(summary)
    assert summary["classes"] == SyntheticDetection("val", length=1).classes
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + TINY["epochs"]
    assert "model_ema" in torch.load(out / "last.pt", weights_only=True)  # evaluated and saved: the EMA


def test_eval_reproduces_the_logged_ap_and_saved_results_re_evaluate_the_same(finished_run, tmp_path):
    out, result = finished_run
    saved = tmp_path / "results.json"
    done = _cli("eval", "--checkpoint", str(out / "best.safetensors"), "--json", "--save-results", str(saved))
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert {"map", "map50", "map75"} <= set(metrics)
    assert metrics["map"] == pytest.approx(result.summary["map"], abs=1e-6)
    results = json.loads(saved.read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    truth = SyntheticDetection("val", size=TINY["image_size"], length=TINY["synthetic_val_size"]).to_coco()
    assert coco_evaluate(truth, results)["map"] == pytest.approx(metrics["map"], abs=1e-9)


def test_onnx_export_matches_pytorch(finished_run, tmp_path):
    import onnxruntime as ort

    out, _ = finished_run
    path = tmp_path / "detector.onnx"
    done = _cli("export", "--checkpoint", str(out / "best.safetensors"), "--output", str(path), "--dynamic-batch")
    assert done.returncode == 0, done.stderr
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["heatmap", "size", "offset"]
    x = torch.randn(3, 3, TINY["image_size"], TINY["image_size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = load_detector(out / "best.safetensors").model(x)
    for actual, wanted in zip(session.run(None, {"image": x.numpy()}), expected, strict=True):
        assert np.abs(actual - wanted.numpy()).max() <= 1e-4


def test_predict_draws_images_and_writes_coco_results(finished_run, tmp_path):
    out, _ = finished_run
    images = tmp_path / "images"
    images.mkdir()
    SyntheticDetection("val", size=120, length=2)[0][0].save(images / "a.png")
    Image.new("RGB", (150, 90), (30, 60, 90)).save(images / "wide.jpg")
    (images / "broken.png").write_bytes(b"not an image")
    drawn = tmp_path / "drawn"
    done = _cli("predict", "--checkpoint", str(out / "best.safetensors"), str(images), "--threshold", "0.01",
                "--output", str(drawn))
    assert done.returncode == 1  # one unreadable image: reported, the others still predicted
    assert "broken.png" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (drawn / "a.png").is_file() and (drawn / "wide.png").is_file()
    with Image.open(drawn / "wide.png") as wide:
        assert wide.size == (150, 90)  # drawn on the original image, boxes in its pixels
    for record in json.loads((drawn / "detections.json").read_text()):
        x, y, w, h = record["bbox"]
        size = (150, 90) if record["file_name"].endswith("wide.jpg") else (120, 120)
        assert 0 <= x <= x + w <= size[0] + 1e-3 and 0 <= y <= y + h <= size[1] + 1e-3


def _plain_boxes_dataset(root: Path) -> Path:
    """Two images with large solid rectangles and discs, in the export layout (train and valid the same)."""
    images, annotations = [], []
    for i, boxes in enumerate([[(10, 12, 50, 40, 1), (60, 55, 90, 90, 2)], [(30, 20, 80, 70, 2)]], start=1):
        picture = Image.new("RGB", (96, 96), (40, 40, 40))
        pixels = picture.load()
        for x0, y0, x1, y1, category in boxes:
            for y in range(y0, y1):
                for x in range(x0, x1):
                    inside = category == 1 or (2 * x - x0 - x1) ** 2 + (2 * y - y0 - y1) ** 2 <= (x1 - x0) ** 2
                    if inside:
                        pixels[x, y] = (220, 60, 60) if category == 1 else (60, 220, 60)
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": category,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        images.append({"id": i, "file_name": f"{i}.png", "width": 96, "height": 96})
        for split in ("train", "valid"):
            (root / split).mkdir(parents=True, exist_ok=True)
            picture.save(root / split / f"{i}.png")
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "disc"}]}
    for split in ("train", "valid"):
        (root / split / "_annotations.coco.json").write_text(json.dumps(coco))
    return root


def test_overfit_check_passes_on_a_handful_of_images(tmp_path):
    data = _plain_boxes_dataset(tmp_path / "data")
    done = _cli("train", "--overfit", "2", "--data", str(data), "--backbone", "mobilenet_v3_small", "--width", "0.5",
                "--image-size", "96", "--lr", "0.01", "--warmup-epochs", "0", "--output", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "overfit check passed" in done.stderr
    epochs = len((tmp_path / "o" / "metrics.csv").read_text().splitlines()) - 1
    assert epochs < 300  # stopped as soon as the check passed


def test_overfit_check_fails_clearly_when_the_loss_cannot_learn(tmp_path, monkeypatch):
    from mobilenets.engine import TrainingError as DetectTrainingError
    from mobilenets.tasks.detection import task as detect_task

    data = _plain_boxes_dataset(tmp_path / "data")
    monkeypatch.setattr(detect_task, "CenterNetCriterion", _FrozenLoss)
    with pytest.raises(DetectTrainingError, match=r"overfit check failed: .*needs a tenfold fall"):
        train_detector(progress=False, output=str(tmp_path / "o"), data=str(data), overfit=2, epochs=2,
                       backbone="mobilenet_v3_small", width=0.5, image_size=64)


class _FrozenLoss(torch.nn.Module):
    """A loss that cannot fall: what a broken target encoding looks like to the overfit check."""

    def __init__(self, *args) -> None:
        super().__init__()

    def forward(self, outputs, targets):
        return outputs[0].mean() * 0 + 1.0


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, tiny_recipe):
    args = ["train", *tiny_recipe, "--epochs=4"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _cli(*args, "--output", str(whole)).returncode == 0
    command = [sys.executable, "-m", "mobilenets", "detect", *args, "--output", str(killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # inside the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 1 <= torch.load(killed / "last.pt", weights_only=True)["epoch"] < 4, "the kill must interrupt the run"
    assert _cli(*args, "--output", str(killed), "--resume").returncode == 0
    final_whole = torch.load(whole / "last.pt", weights_only=True)
    final_killed = torch.load(killed / "last.pt", weights_only=True)
    assert all(torch.equal(final_whole["model"][k], v) for k, v in final_killed["model"].items())
    timing = {"images_per_second", "seconds"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in final_killed["history"]] == \
           [{k: v for k, v in r.items() if k not in timing} for r in final_whole["history"]]


def _export_layout(root: Path) -> Path:
    write_coco(SyntheticDetection("train", size=96, length=16), root / "train")
    write_coco(SyntheticDetection("val", size=96, length=8), root / "valid")
    return root


def _keep_categories(path: Path, count: int) -> dict:
    coco = json.loads(path.read_text())
    coco["categories"] = coco["categories"][:count]
    coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] <= count]
    path.write_text(json.dumps(coco))
    return coco


def test_train_on_export_layout_and_fine_tune_with_other_classes(tmp_path, finished_run, tiny_recipe):
    data = _export_layout(tmp_path / "data")
    _keep_categories(data / "train" / "_annotations.coco.json", 3)
    coco = _keep_categories(data / "valid" / "_annotations.coco.json", 3)
    out, _ = finished_run
    done = _cli("train", *tiny_recipe, "--epochs=1", "--data", str(data), "--pretrained", str(out / "best.safetensors"),
                "--output", str(tmp_path / "tuned"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "export layout" in done.stderr
    assert "6 classes and this data 3: the heat-map head is re-initialised" in done.stderr
    assert load_detector(tmp_path / "tuned" / "best.safetensors").classes == [c["name"] for c in coco["categories"]]
    other_heads = _cli("train", *tiny_recipe, "--data", str(data), "--pretrained", str(out / "best.safetensors"),
                       "--head-conv", "full", "--output", str(tmp_path / "other"))
    assert other_heads.returncode == 2
    assert "head_conv separable, but this run asks for full (pass --head-conv separable)" in other_heads.stderr


def test_bad_data_is_one_line_naming_the_file(tmp_path, tiny_recipe):
    data = _export_layout(tmp_path / "data")
    broken = data / "valid" / "_annotations.coco.json"
    broken.write_text('{"images": [')
    done = _cli("train", *tiny_recipe, "--data", str(data), "--output", str(tmp_path / "x"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and str(broken) in done.stderr
    missing = _cli("train", "--train-json", str(data / "train" / "_annotations.coco.json"), "--output", "x")
    assert missing.returncode == 2 and "train-images" in missing.stderr


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def file_server(tmp_path):
    """A local HTTP server for tmp_path/served; yields its base URL."""
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_pretrained_backbone_from_a_downloaded_registry_entry(tmp_path, file_server, monkeypatch):
    import dataclasses
    import hashlib

    import torchvision

    from mobilenets.weights import registry

    root, url = file_server
    peer = torchvision.models.mobilenet_v3_small(num_classes=1000).eval()
    torch.save(peer.state_dict(), root / "mobilenet_v3_small-test.pth")
    digest = hashlib.sha256((root / "mobilenet_v3_small-test.pth").read_bytes()).hexdigest()
    name = "torchvision/mobilenet_v3_small.imagenet1k_v1"
    entry = dataclasses.replace(registry.get_published(name), url=f"{url}/mobilenet_v3_small-test.pth",
                                sha256=digest)
    monkeypatch.setitem(registry.REGISTRY, name, entry)
    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "cache"))
    from mobilenets.tasks.detection.checkpoint import pretrained_detector

    model, description = pretrained_detector(name, backbone="mobilenet_v3_small", width_mult=1.0, num_classes=3)
    assert "torchvision layout, classifier dropped" in description
    x = torch.randn(1, 3, 64, 64)
    reference = mobilenets.create_model("mobilenet_v3_small", weights=str(root / "mobilenet_v3_small-test.pth"))
    with torch.no_grad():
        assert torch.allclose(model.backbone.eval().features(x), reference.eval().features(x), atol=1e-5)
