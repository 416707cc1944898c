"""Every kind of bad input, through the command line: each case is tiny files the test makes and one command, and
must end with the expected exit status, one stderr line naming the file or option (no traceback), and every file
under the test's folder as it was (nothing half-written, nothing overwritten, nothing left behind)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from mobilenets.cli import main
from mobilenets.data.synthetic import SHAPE_CLASSES


@dataclass
class Case:
    """`make(folder, runs)` builds the case's files and returns its command line; `expect` is in the error line,
    with {folder} standing for the case's folder."""

    make: Callable[[Path, Runs], list[str]]
    expect: str
    status: int = 2


@dataclass
class Runs:
    """The shared trained runs' files, copied into the case's folder on demand (so the check covers them too)."""

    folder: Path
    classifier: Path
    detector: Path

    def copy(self, kind: str, name: str) -> Path:
        target = self.folder / f"{kind}-{name}"
        shutil.copyfile(getattr(self, kind) / name, target)
        return target

    def classifier_file(self, name: str = "best.safetensors") -> Path:
        return self.copy("classifier", name)

    def detector_file(self, name: str = "best.safetensors") -> Path:
        return self.copy("detector", name)


def _images(folder: Path, count: int = 2, size: tuple[int, int] = (40, 40)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", size, (40 * i, 90, 160)).save(folder / f"im{i}.png")
    return folder


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _coco(folder: Path, edit: Callable[[dict], None] | None = None) -> Path:
    """A one-image COCO split in `folder` (annotations.json + a.png), changed by `edit`; returns the JSON's path."""
    _images(folder, 1, (64, 48))
    (folder / "im0.png").rename(folder / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20]}],
            "categories": [{"id": 1, "name": "thing"}]}
    if edit:
        edit(coco)
    return _text(folder / "annotations.json", json.dumps(coco))


def _coco_eval(edit: Callable[[dict], None]) -> Callable[[Path, Runs], list[str]]:
    def make(folder: Path, runs: Runs) -> list[str]:
        truth = _coco(folder / "val", edit)
        return ["detect", "eval", "--checkpoint", str(runs.detector_file()), "--val-json", str(truth),
                "--val-images", str(folder / "val")]
    return make


def _train(*options: str) -> Callable[[Path, Runs], list[str]]:
    return lambda folder, runs: ["train", *options, "--output", str(folder / "run")]


def _train_on(build: Callable[[Path], None]) -> Callable[[Path, Runs], list[str]]:
    def make(folder: Path, runs: Runs) -> list[str]:
        build(folder / "data")
        return ["train", "--data", str(folder / "data"), "--output", str(folder / "run")]
    return make


def _only_broken_images(data: Path) -> None:
    for label in ("a", "b"):
        _images(data / "train" / label)
        _images(data / "val" / label)
    for image in (data / "train" / "b").iterdir():
        image.write_bytes(image.read_bytes()[:60])


def _only_dangling_links(data: Path) -> None:
    _images(data / "train" / "a")
    (data / "train" / "b").mkdir(parents=True)
    (data / "train" / "b" / "gone.png").symlink_to("nowhere.png")
    (data / "train" / "b" / "loop").symlink_to("..")
    for label in ("a", "b"):
        _images(data / "val" / label)


def _over_the_pixel_limit(data: Path) -> None:  # the test lowers Pillow's limit to 2000 pixels
    for label in ("a", "b"):
        _images(data / "train" / label)
        _images(data / "val" / label)
    _images(data / "train" / "b", size=(60, 40))


def _resume_from(kind: str, damage: Callable[[Path], None] | None = None) -> Callable[[Path, Runs], list[str]]:
    def make(folder: Path, runs: Runs) -> list[str]:
        source = runs.classifier_file("last.pt") if kind == "classifier" else runs.detector_file("last.pt")
        (folder / "run").mkdir()
        target = source.rename(folder / "run" / "last.pt")
        if damage:
            damage(target)
        return ["train", "--resume", "--output", str(folder / "run"), "--workers", "0"]
    return make


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _held_run_folder(folder: Path, runs: Runs) -> list[str]:
    (folder / "run").mkdir()
    holder = open(folder / "run" / ".lock", "a")  # noqa: SIM115 - held until the test's folder is removed
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD.append(holder)
    return ["train", "--output", str(folder / "run")]


_HELD: list = []


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran",))


def _malicious_pickle(folder: Path, runs: Runs) -> list[str]:
    import torch

    torch.save({"model": _RunsCode()}, folder / "model.pt")
    return ["eval", "--checkpoint", str(folder / "model.pt")]


def _metadata(config: str | None = None, **meta: object) -> Callable[[Path, Runs], list[str]]:
    """`eval` of a copy of the shared classifier whose config metadata is `config`, or whose meta entries are
    replaced by `meta`."""
    def make(folder: Path, runs: Runs) -> list[str]:
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        good = runs.classifier_file()
        with safe_open(str(good), "pt") as opened:
            metadata = opened.metadata()
        if config is not None:
            metadata["mobilenets.config"] = config
        metadata["mobilenets.meta"] = json.dumps({**json.loads(metadata["mobilenets.meta"]), **meta})
        bad = folder / "bad.safetensors"
        save_file(load_file(str(good)), str(bad), metadata=metadata)
        return ["eval", "--checkpoint", str(bad)]
    return make


def _export(*options: str, checkpoint: bool = False, output: str = "m.onnx") -> Callable[[Path, Runs], list[str]]:
    """`mobilenets export` of a small zoo network (or the shared classifier) with `options`, paths in the case's
    folder; an output inside `a_file` makes that file first."""
    def make(folder: Path, runs: Runs) -> list[str]:
        _a_file(folder)
        source = ["--checkpoint", str(runs.classifier_file())] if checkpoint else ["mobilenet_v3_small", "--width",
                                                                                    "0.25"]
        options_in_folder = [str(folder / o) if o == "none" else o for o in options]
        fmt = [] if "--format" in options else ["--format", "onnx"]
        return ["export", *source, *fmt, *options_in_folder, "--output", str(folder / output)]
    return make


def _onnx_with(folder: Path, *, classes: int = 3, outputs: int = 3, size: int = 32, crop: int = 32,
               **metadata: object) -> Path:
    """A small classifier exported to ONNX with `outputs` logits at `size` px, whose metadata says `classes`
    class names and a `crop`-px preprocessing, plus `metadata`."""
    from mobilenets import create_model
    from mobilenets.data.transforms import default_preprocess
    from mobilenets.deploy import export

    model = create_model("mobilenet_v3_small", width_mult=0.25, num_classes=outputs).eval()
    meta = {"classes": [f"c{i}" for i in range(classes)], "preprocess": default_preprocess(crop).to_dict(),
            **metadata}
    return export(model, "onnx", folder / "m.onnx", resolution=size, metadata=meta).path


def _detector_onnx(folder: Path, runs: Runs, classes: int | None = None, names: object = None, **meta: object) -> Path:
    """The shared detector exported to ONNX, its metadata cut to its first `classes` classes if given, every class
    named `names` if given, with `meta`'s entries (e.g. a train_config)."""
    from dataclasses import replace

    from mobilenets.tasks.detection.checkpoint import load_detector
    from mobilenets.tasks.detection.export import export_detector

    detector = load_detector(runs.detector / "best.safetensors")
    if classes is not None:
        detector = replace(detector, classes=detector.classes[:classes], category_ids=detector.category_ids[:classes])
    if names is not None:
        detector = replace(detector, classes=[names] * len(detector.classes))
    return export_detector(replace(detector, meta={**detector.meta, **meta}), folder / "d.onnx")


def _fifo(folder: Path, name: str) -> Path:
    os.mkfifo(folder / name)
    return folder / name


def _a_file(folder: Path) -> Path:
    return _text(folder / "a_file", "not a folder")


CASES: dict[str, Case] = {
    # option values: refused before any work, naming the option
    "width too large": Case(_train("--width", "100"), "width: must be in (0, 4], got 100"),
    "image size absurd": Case(_train("--image-size", "100000"), "image_size: must be between 32 and 4096"),
    "dropout 1.5": Case(_train("--dropout", "1.5"), "dropout: must be in [0, 1), got 1.5"),
    "label smoothing 1": Case(_train("--label-smoothing", "1"), "label_smoothing: must be in [0, 1)"),
    "warm-up nan": Case(_train("--warmup-epochs", "nan"), "warmup_epochs: must be >= 0, got nan"),
    "crop scale reversed": Case(_train("--crop-scale", "1", "0.5"), "crop_scale: need 0 < low <= high <= 1"),
    "negative dataset size": Case(_train("--synthetic-train-size", "-5"),
                                  "--synthetic-train-size: must be an integer >= 1, got '-5'"),
    "unknown device": Case(_train("--device", "tpu9"), "device: unknown 'tpu9'"),
    "cuda without a GPU": Case(_train("--device", "cuda:7"), "device: cuda:7 asked for, but this machine has"),
    "batch size zero": Case(_train("--batch-size", "0"), "--batch-size: must be an integer >= 1, got '0'"),
    "not a number": Case(_train("--lr", "fast"), "--lr: must be a number > 0, got 'fast'"),
    "unknown model": Case(_train("--model", "resnet50"), "--model: invalid choice: 'resnet50'"),
    "validation fraction 1.5": Case(_train("--val-split", "1.5"), "val_split: must be between 0 and 1, got 1.5"),
    "validation fraction without data": Case(_train("--val-split", "0.2"), "val_split: splits a --data folder; the "
                                                                           "built-in data has its own validation"),
    "epochs absurd": Case(_train("--epochs", str(10**20)), "epochs: at most 100000, got 100000000000000000000"),
    "built-in set absurd": Case(_train("--synthetic-train-size", str(10**10)),
                                "synthetic_train_size: at most 1000000, got 10000000000"),
    "built-in detection set absurd": Case(lambda f, r: ["detect", "train", "--synthetic-val-size", str(10**14),
                                                        "--output", str(f / "run")],
                                          "synthetic_val_size: at most 1000000, got 100000000000000"),
    "built-in set over the memory": Case(_train("--synthetic-train-size", "1000000", "--image-size", "2048"),
                                         "drawing training shapes: 1,000,000 images of 2048x2048 px need 11718.8 GiB "
                                         "of memory, more than this machine has", status=1),
    "recipe key given twice": Case(lambda f, r: ["train", "--config",
                                                 str(_text(f / "r.yaml", "epochs: 1\nepochs: 2\n"))],
                                   "{folder}/r.yaml: not valid YAML ('epochs' is given twice)"),
    "recipe output a list": Case(lambda f, r: ["train", "--config", str(_text(f / "r.yaml", "output: [a]\n"))],
                                 "{folder}/r.yaml: output: invalid value ['a'] (it needs a path or a name)"),
    "experiment seeds absurd": Case(lambda f, r: ["experiment", "se", "--seeds", str(10**11), "--output", str(f / "x")],
                                    "--seeds: at most 100, got 100000000000"),
    "seed negative": Case(_train("--seed", "-1"), "seed: must be >= 0, got -1"),
    "EMA decay 2": Case(_train("--ema", "--ema-decay", "2"), "ema_decay: must be in [0, 1), got 2.0"),
    "momentum 5": Case(_train("--momentum", "5"), "momentum: must be in [0, 1), got 5.0"),
    "step schedule every 0 epochs": Case(_train("--schedule", "step", "--step-epochs", "0"),
                                         "step_epochs: must be > 0, got 0.0"),
    "recipe value of the wrong type": Case(lambda f, r: ["train", "--config", str(_text(f / "r.yaml",
                                                                                         "epochs: two\n"))],
                                           "{folder}/r.yaml: epochs: invalid value 'two'"),
    "recipe value out of range": Case(lambda f, r: ["train", "--config", str(_text(f / "r.yaml", "lr: -1\n"))],
                                      "{folder}/r.yaml: lr: must be > 0, got -1.0"),
    "recipe data folder missing": Case(lambda f, r: ["detect", "train", "--config",
                                                     str(_text(f / "r.yaml", "data: 5\n"))],
                                       "{folder}/r.yaml: data: 5: no such folder"),
    "config is a folder": Case(lambda f, r: ["train", "--config", str(f)], "{folder}: a folder, not a YAML recipe"),
    "recipe value null": Case(lambda f, r: ["train", "--config", str(_text(f / "r.yaml", "epochs: null\n"))],
                              "{folder}/r.yaml: epochs: invalid value None (it needs a int)"),
    "config not YAML": Case(lambda f, r: ["train", "--config", str(_text(f / "r.yaml", "a: [1, 2"))], "r.yaml"),
    "config unknown key": Case(lambda f, r: ["train", "--config", str(_text(f / "r.yaml", "wings: 2\n"))],
                               "wings"),
    "config missing": Case(lambda f, r: ["train", "--config", str(f / "none.yaml")], "none.yaml"),
    "detect neck too wide": Case(lambda f, r: ["detect", "train", "--neck-channels", "100000", "--output",
                                                str(f / "run")], "neck_channels: at most 4096, got 100000"),
    "detect width too large": Case(lambda f, r: ["detect", "train", "--width", "50", "--output", str(f / "run")],
                                   "width: must be in (0, 4], got 50"),
    # data folders: a line naming the folder; unusable files are skipped and counted, not fatal unless none is left
    "data missing": Case(lambda f, r: ["train", "--data", str(f / "none")], "{folder}/none: no such folder"),
    "data is a file": Case(lambda f, r: ["train", "--data", str(_a_file(f))], "{folder}/a_file: not a folder"),
    "data without class folders": Case(_train_on(lambda d: _text(d / "train" / "x.png", "")),
                                       "{folder}/data: expected train/ and val/ folders"),
    "a class of corrupt images": Case(_train_on(_only_broken_images), "{folder}/data/train/b: no readable images"),
    "a class of broken links": Case(_train_on(_only_dangling_links),
                                    "{folder}/data/train/b: no readable images (2 files skipped: loop [symbolic link "
                                    "loop (to a folder already listed)], gone.png [broken symbolic link (to "
                                    "nowhere.png)])"),
    "a class over the pixel limit": Case(_train_on(_over_the_pixel_limit),
                                         "{folder}/data/train/b: no readable images (2 files skipped: im0.png "
                                         "[60x40 = 2,400 pixels, over the limit of 2,000"),
    # checkpoints: a line naming the file, never code run from a pickle
    "checkpoint is a folder": Case(lambda f, r: ["eval", "--checkpoint", str(f)], "{folder}: a folder, not a file"),
    "predict with a folder as checkpoint": Case(lambda f, r: ["predict", "--checkpoint", str(f / "in"),
                                                              str(_images(f / "in", 1))],
                                                "{folder}/in: a folder, not a weights file"),
    "checkpoint missing": Case(lambda f, r: ["eval", "--checkpoint", str(f / "none.safetensors")],
                               "{folder}/none.safetensors"),
    "checkpoint not weights": Case(lambda f, r: ["eval", "--checkpoint", str(_text(f / "m.safetensors", "hi"))],
                                   "{folder}/m.safetensors"),
    "checkpoint truncated": Case(lambda f, r: ["eval", "--checkpoint", str(_truncated(r.classifier_file()))],
                                 "classifier-best.safetensors"),
    "pickle that runs code": Case(_malicious_pickle, "{folder}/model.pt: refused to load"),
    "config metadata not JSON": Case(_metadata("{oops"), "bad.safetensors: its mobilenets.config metadata is not "
                                                         "valid JSON"),
    "config metadata a list": Case(_metadata("[1, 2]"), "bad.safetensors: its mobilenets.config metadata is a list"),
    "config metadata no name": Case(_metadata('{"width_mult": 0.25}'), "bad.safetensors: its config does not "
                                                                        "describe a model"),
    "config metadata width 1000": Case(_metadata('{"name": "mobilenet_v3_small", "width_mult": 1000, '
                                                 '"num_classes": 3}'), "bad.safetensors: its config does not "
                                                                       "describe a model (width_mult must be in"),
    "config metadata width 2": Case(_metadata('{"name": "mobilenet_v3_small", "width_mult": 2, "num_classes": 3}'),
                                    "bad.safetensors (mobilenets layout) does not fit mobilenet_v3_small("
                                    "width_mult=2"),
    "preprocessing incomplete": Case(_metadata(preprocess={"image_size": 32}), "bad.safetensors: invalid "
                                                                               "preprocessing {'image_size': 32}"),
    "preprocessing not numbers": Case(_metadata(preprocess={"image_size": "big", "resize": 36, "mean": [0, 0, 0],
                                                            "std": [1, 1, 1]}), "bad.safetensors: invalid prepro"),
    "preprocessing mean not numbers": Case(_metadata(preprocess={"image_size": 32, "resize": 36, "mean": "x",
                                                                 "std": [1, 1, 1]}),
                                           "bad.safetensors: mean and std need 3 finite numbers each, std "
                                           "positive; got mean='x'"),
    "preprocessing std NaN": Case(_metadata(preprocess={"image_size": 32, "resize": 36, "mean": [0, 0, 0],
                                                        "std": [float("nan")] * 3}), "got mean=[0, 0, 0], std=[nan"),
    "preprocessing resize absurd": Case(_metadata(preprocess={"image_size": 32, "resize": 10**6, "mean": [0, 0, 0],
                                                              "std": [1, 1, 1]}),
                                        "bad.safetensors: need 1 <= image_size <= resize <= 8192, got image_size=32, "
                                        "resize=1000000"),
    "class names not text": Case(_metadata(classes=[None] * len(SHAPE_CLASSES)),
                                 "bad.safetensors: its class names must be text, got None"),
    "fewer class names than outputs": Case(_metadata(classes=["a"]), "bad.safetensors: 1 class name, but its "
                                                                     "network has "),
    "detector evaluated as classifier": Case(lambda f, r: ["eval", "--checkpoint", str(r.detector_file())],
                                             "detector-best.safetensors: a detection checkpoint, not a "
                                             "classifier"),
    "detector as pretrained classifier": Case(lambda f, r: ["train", "--pretrained", str(r.detector_file()),
                                                            "--output", str(f / "run")], "detector-best.safetensors"),
    "detector from another backbone": Case(lambda f, r: ["detect", "train", "--pretrained", str(r.classifier_file()),
                                                         "--backbone", "mobilenet_v2", "--output", str(f / "run")],
                                           "classifier-best.safetensors: a mobilenet_v3_small with name "
                                           "mobilenet_v3_small, but this run asks for mobilenet_v2 (pass --backbone "
                                           "mobilenet_v3_small)"),
    "classifier as detector": Case(lambda f, r: ["detect", "eval", "--checkpoint", str(r.classifier_file())],
                                   "classifier-best.safetensors"),
    "resume truncated last.pt": Case(_resume_from("classifier", _truncate), "{folder}/run/last.pt"),
    "resume a detection run": Case(_resume_from("detector"), "{folder}/run/last.pt: the checkpoint of a detection "
                                                             "run, not of a classification run"),
    "resume with other options": Case(_resume_from("classifier"), "{folder}/run/last.pt: cannot resume with a "
                                                                  "different batch_size (16 in the run, 64 now)"),
    # a run folder another run holds
    "run folder in use": Case(_held_run_folder, "{folder}/run: another run"),
    # COCO files: a line naming the file
    "COCO not JSON": Case(_coco_eval(lambda c: c.clear()), "annotations.json: no 'images' / 'annotations'"),
    "COCO crowd flag as text": Case(_coco_eval(lambda c: c["annotations"][0].update(iscrowd="yes")),
                                    "annotations.json: annotation 1: iscrowd must be 0 or 1, got 'yes'"),
    "COCO no categories": Case(_coco_eval(lambda c: (c["categories"].clear(), c["annotations"].clear())),
                               "annotations.json: no categories (a detector needs at least one class)"),
    "COCO category name a number": Case(_coco_eval(lambda c: c["categories"][0].update(name=5)),
                                        "annotations.json: category name 5 is not a name"),
    "COCO category name null": Case(_coco_eval(lambda c: c["categories"][0].update(name=None)),
                                    "annotations.json: category name None is not a name"),
    "COCO string category id": Case(_coco_eval(lambda c: c["categories"][0].update(id="1")),
                                    "annotations.json: category id '1' is not an integer from 0 to 2^53 - 1"),
    "COCO category id too large": Case(_coco_eval(lambda c: c["categories"][0].update(id=10**30)),
                                       f"annotations.json: category id {10**30} is not an integer from 0 to 2^53 - 1"),
    "COCO repeated image id": Case(_coco_eval(lambda c: c["images"].append(dict(c["images"][0]))),
                                   "annotations.json: image id 1 appears more than once"),
    "COCO width as text": Case(_coco_eval(lambda c: c["images"][0].update(width="64")),
                               "annotations.json: image 1: width and height must be positive integers, got '64' x 48"),
    "COCO bbox not a number": Case(_coco_eval(lambda c: c["annotations"][0].update(bbox=[1, 2, float("nan"), 4])),
                                   "annotations.json: annotation 1: bbox must be [x, y, width, height], got [1, 2, "
                                   "nan, 4]"),
    "COCO file outside the images": Case(_coco_eval(lambda c: c["images"][0].update(file_name="../secret.png")),
                                         "annotations.json: image 1: file_name '../secret.png' points outside the "
                                         "image folder"),
    "COCO bbox of three": Case(_coco_eval(lambda c: c["annotations"][0].update(bbox=[1, 2, 3])),
                               "annotations.json: annotation 1: bbox must be [x, y, width, height]"),
    "COCO unknown category": Case(_coco_eval(lambda c: c["annotations"][0].update(category_id=9)),
                                  "annotations.json: annotation 1 refers to category id 9"),
    "COCO file name a number": Case(_coco_eval(lambda c: c["images"][0].update(file_name=5)),
                                    "annotations.json: image 1: file_name must be a file's name, got 5"),
    "COCO no image readable": Case(_coco_eval(lambda c: c["images"][0].update(file_name="gone.png")),
                                   "none of the 1 images listed in"),
    # outputs: checked before the work, nothing written
    "export into a file": Case(_export(output="a_file/m.onnx"), "{folder}/a_file is a file, not a folder"),
    "export onto a folder": Case(_export(output="."), "a folder, not a file"),
    "export onto a pipe": Case(lambda f, r: [*_export()(f, r)[:-1], str(_fifo(f, "p.onnx"))],
                               "{folder}/p.onnx: not a regular file"),
    "executorch export whose sidecar is a folder": Case(
        lambda f, r: [*_export("--format", "executorch", output="z.pte")(f, r)[:-2], "--output",
                      str((f / "z.pte.json").mkdir() or f / "z.pte")], "{folder}/z.pte.json: a folder"),
    "onnx export named .pte": Case(_export(output="m.pte"), "{folder}/m.pte: a .pte name for the onnx format"),
    "int8 calibration folder missing": Case(_export("--int8", "--calibration", "none", checkpoint=True),
                                            "--calibration: {folder}/none: no such folder"),
    "exported: fewer class names than outputs": Case(lambda f, r: ["predict", "--model", str(_onnx_with(f, classes=2)),
                                                         str(_images(f / "in", 1))],
                                           "{folder}/m.onnx: 2 class names, but its network has 3 outputs"),
    "preprocessing of another size than the input": Case(
        lambda f, r: ["predict", "--model", str(_onnx_with(f, crop=64)), str(_images(f / "in", 1))],
        "{folder}/m.onnx: its preprocessing crops 64 px, but its network takes 32x32"),
    "train_config not an object": Case(lambda f, r: ["eval", "--model", str(_onnx_with(f, train_config="x"))],
                                       "{folder}/m.onnx: its train_config is not a JSON object"),
    "train_config out of range": Case(
        lambda f, r: ["eval", "--model", str(_onnx_with(f, train_config={"synthetic_val_size": -5}))],
        "{folder}/m.onnx: its train_config does not hold: synthetic_val_size"),
    "a detector given to predict": Case(lambda f, r: ["predict", "--model", str(_detector_onnx(f, r)),
                                                      str(_images(f / "in", 1))],
                                        "d.onnx: has 3 outputs, not a classifier's one"),
    "exported detector: fewer class names than heat-map channels": Case(
        lambda f, r: ["detect", "predict", "--model", str(_detector_onnx(f, r, classes=1)), str(_images(f / "in", 1))],
        "d.onnx: 1 class name and 1 category id, but its network has"),
    # outputs that would replace the model they come from
    "export onto its checkpoint": Case(lambda f, r: ["export", "--checkpoint", str(c := r.classifier_file()),
                                                     "--format", "onnx", "--output", str(c)],
                                       "classifier-best.safetensors: this is the input"),
    "export to a checkpoint's name": Case(_export(output="m.safetensors"), "{folder}/m.safetensors: a .safetensors "
                                                                           "name is a checkpoint's, not a name for "
                                                                           "the onnx format"),
    "torchscript export onto its last.pt": Case(lambda f, r: ["export", "--checkpoint", str(c := r.classifier_file(
        "last.pt")), "--format", "torchscript", "--output", str(c)], "{folder}/classifier-last.pt: this is the input "
                                                                      "{folder}/classifier-last.pt; it is kept"),
    "detector export onto its last.pt": Case(lambda f, r: ["detect", "export", "--checkpoint",
                                                           str(d := r.detector_file("last.pt")), "--output", str(d)],
                                             "detector-last.pt: this is the input"),
    "detection results onto the model": Case(lambda f, r: ["detect", "eval", "--checkpoint",
                                                           str(d := r.detector_file()), "--save-results", str(d)],
                                             "detector-best.safetensors: this is the input"),
    "detector kept-float classifier": Case(lambda f, r: ["detect", "export", "--checkpoint", str(r.detector_file()),
                                                         "--format", "executorch", "--int8", "--keep-float",
                                                         "classifier", "--output", str(f / "d.pte")],
                                           "keep_float: a detector has no classifier"),
    "exported detector: class names not text": Case(
        lambda f, r: ["detect", "eval", "--model", str(_detector_onnx(f, r, names=5))],
        "d.onnx: its class names or category ids are not lists of names and integers"),
    "exported detector: train_config not an object": Case(
        lambda f, r: ["detect", "eval", "--model", str(_detector_onnx(f, r, train_config=[1]))],
        "d.onnx: its train_config is not a JSON object"),
    "exported detector: train_config out of range": Case(
        lambda f, r: ["detect", "eval", "--model", str(_detector_onnx(f, r, train_config={"epochs": -1}))],
        "d.onnx: its train_config does not hold: epochs: must be > 0, got -1"),
    "bench output a file": Case(lambda f, r: ["bench", "--models", "mobilenet_v3_small", "--output",
                                              str(_a_file(f))], "{folder}/a_file is a file, not a folder"),
    "train output empty": Case(lambda f, r: ["train", "--epochs", "1", "--output", ""], "output: an empty path"),
    "predict an empty path": Case(lambda f, r: ["predict", "--checkpoint", str(r.classifier_file()), ""],
                                  "an empty path"),
    "eval batch size 0": Case(lambda f, r: ["eval", "--checkpoint", str(r.classifier_file()), "--batch-size", "0"],
                              "--batch-size: must be an integer >= 1, got '0'"),
    "serve with an empty API key": Case(lambda f, r: ["serve", "--checkpoint", str(r.classifier_file()),
                                                      "--api-key", ""], "--api-key: the API key is empty"),
    "int8 export into a file": Case(_export("--int8", checkpoint=True, output="a_file/m.onnx"),
                                    "is a file, not a folder"),
    "int8 on torchscript": Case(_export("--int8", "--format", "torchscript"), "--int8"),
    "qat without int8": Case(_export("--qat-epochs", "1", checkpoint=True), "--qat-epochs needs --int8"),
    "calibration folder missing": Case(_export("--int8", "--calibration", "none"), "{folder}/none"),
    "eval output into a file": Case(lambda f, r: ["eval", "--checkpoint", str(r.classifier_file()), "--output",
                                                  str(_a_file(f) / "x")], "is a file, not a folder"),
    "detect eval results into a file": Case(lambda f, r: ["detect", "eval", "--checkpoint", str(r.detector_file()),
                                                          "--save-results", str(_a_file(f) / "r.json")],
                                            "is a file, not a folder"),
    "train output inside a file": Case(lambda f, r: ["train", "--output", str(_a_file(f) / "run")],
                                       "output: {folder}/a_file/run: cannot write here"),
    "drawings inside a file": Case(lambda f, r: ["detect", "predict", "--checkpoint", str(r.detector_file()),
                                                 str(_images(f / "in", 1)), "--output", str(_a_file(f) / "d")],
                                   "is a file, not a folder"),
    # predict inputs
    "predict an empty folder": Case(lambda f, r: ["predict", "--checkpoint", str(r.classifier_file()),
                                                  str(_images(f / "empty", 0))],
                                    "{folder}/empty: no image files in this folder"),
    "detect predict an empty folder": Case(lambda f, r: ["detect", "predict", "--checkpoint", str(r.detector_file()),
                                                         str(_images(f / "empty", 0))],
                                           "{folder}/empty: no image files in this folder"),
    "predict a non-image": Case(lambda f, r: ["predict", "--checkpoint", str(r.classifier_file()),
                                              str(_text(f / "x.png", "text"))], "{folder}/x.png", status=1),
    "detect predict a missing file": Case(lambda f, r: ["detect", "predict", "--checkpoint", str(r.detector_file()),
                                                        str(f / "gone.png")], "{folder}/gone.png", status=1),
    "exported model of another kind": Case(lambda f, r: ["eval", "--model", str(_text(f / "m.tflite", "x"))],
                                           "{folder}/m.tflite: not an exported model (expected .onnx or .pte;"),
    "ONNX model that is not one": Case(lambda f, r: ["predict", "--model", str(_text(f / "m.onnx", "x")),
                                                     str(_images(f / "in", 1))], "{folder}/m.onnx: onnxruntime "
                                                                                  "cannot load it"),
    "pte that is not one": Case(lambda f, r: ["predict", "--model", str(_text(f / "m.pte", "not a program")),
                                              str(_images(f / "in", 1))], "{folder}/m.pte: not an ExecuTorch program"),
    "executorch with a dynamic batch": Case(_export("--format", "executorch", "--dynamic-batch"),
                                            "--dynamic-batch is not for --format executorch"),
    "export width 50": Case(lambda f, r: ["export", "mobilenet_v2", "--width", "50", "--format", "onnx", "--output",
                                          str(f / "m.onnx")], "--width: must be a number in (0, 4], got '50'"),
    "profile width 50": Case(lambda f, r: ["profile", "mobilenet_v2", "--width", "50"],
                             "--width: must be a number in (0, 4], got '50'"),
    "profile resolution 100000": Case(lambda f, r: ["profile", "mobilenet_v2", "--resolution", "100000"],
                                      "--resolution: must be an integer from 32 to 4096, got '100000'"),
    "bench batch 100000": Case(lambda f, r: ["bench", "--models", "mobilenet_v3_small", "--batch", "100000"],
                               "--batch: must be an integer from 1 to 1024, got '100000'"),
    "bench threads 100000": Case(lambda f, r: ["bench", "--models", "mobilenet_v3_small", "--threads", "100000"],
                                 "--threads: must be an integer from 1 to"),
    "bench runs absurd": Case(lambda f, r: ["bench", "--runs", str(10**14)],
                              "--runs: must be an integer from 1 to 1000000, got '100000000000000'"),
    "serve an empty web origin": Case(lambda f, r: ["serve", "--checkpoint", str(r.classifier_file()), "--cors", ""],
                                      "--cors: must be a web origin such as https://example.com (or *), got ''"),
    "bench without models": Case(lambda f, r: ["bench", "--models", ","], "--models: no model given"),
    "bench model twice": Case(lambda f, r: ["bench", "--models", "mobilenet_v3_small,mobilenet_v3_small"],
                              "--models: model 'mobilenet_v3_small' given twice"),
    "detect threshold 2": Case(lambda f, r: ["detect", "predict", "--checkpoint", str(r.detector_file()),
                                             str(_images(f / "in", 1)), "--threshold", "2"],
                               "--threshold: must be a number in [0, 1], got '2'"),
    "bench unknown backend": Case(lambda f, r: ["bench", "--backends", "eager,warp"], "warp"),
}


def _truncated(path: Path) -> Path:
    _truncate(path)
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder`: a file's digest and mode, or what else it is."""
    state = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            state[name] = "link"
        elif not path.is_dir() and not path.is_file():
            state[name] = "special"
        elif path.is_dir():
            state[name] = "folder"
        else:
            state[name] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {path.stat().st_mode:o}"
    return state


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_and_changes_nothing(name, tmp_path, capsys, monkeypatch, classifier_run,
                                                   detector_run):
    case = CASES[name]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    monkeypatch.chdir(tmp_path)  # the default output folders (runs/...) land here, where the check sees them
    argv = case.make(tmp_path, Runs(tmp_path, classifier_run[0], detector_run[0]))
    before = _snapshot(tmp_path)
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    finally:
        while _HELD:
            _HELD.pop().close()
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert "Traceback" not in captured.err + captured.out
    assert len(error.splitlines()) == 1, error
    assert case.expect.replace("{folder}", str(tmp_path)) in error
    assert status == case.status, error
    after = _snapshot(tmp_path)
    assert after == before, {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys()
                             if before.get(k) != after.get(k)}
