"""Bad or unusual input loses nothing and scores right: inputs are never overwritten, a run never replaces
another's files or shares its folder with a concurrent run, and COCO ground truth with odd annotation ids scores
the same as with clean ones."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from mobilenets.tasks.detection.evaluate import coco_evaluate
from mobilenets.tasks.detection.inference import predict_images


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_drawn_detections_never_overwrite_an_input_and_keep_same_names_apart(tmp_path, detector_run):
    out, _ = detector_run
    for folder, colour in (("a", "red"), ("b", "blue")):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (64, 48), colour).save(tmp_path / folder / "x.png")
    before = _digest(tmp_path / "a" / "x.png")
    inputs = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]
    predict_images(out / "best.safetensors", inputs, draw_to=tmp_path / "a")  # drawn into an input folder
    assert _digest(tmp_path / "a" / "x.png") == before
    drawn = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert drawn == ["x.png", "x_2.png", "x_3.png"]  # the input, then one drawing per input
    predict_images(out / "best.safetensors", inputs, draw_to=tmp_path / "drawn")
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["x.png", "x_2.png"]
    with Image.open(tmp_path / "drawn" / "x.png") as first, Image.open(tmp_path / "drawn" / "x_2.png") as second:
        assert first.getpixel((0, 0)) != second.getpixel((0, 0))  # a/x.png and b/x.png, not one twice


def _truth(ids: list[int]) -> dict:
    boxes = [[10, 10, 20, 20], [40, 40, 10, 30], [5, 50, 30, 10]]
    return {"images": [{"id": 1, "width": 100, "height": 100}],
            "annotations": [{"id": i, "image_id": 1, "category_id": 1, "bbox": b} for i, b in zip(ids, boxes,
                                                                                                   strict=True)],
            "categories": [{"id": 1, "name": "thing"}]}


@pytest.mark.parametrize("ids", [[0, 1, 2], [7, 7, 7], [3, 0, 3]], ids=["from 0", "all equal", "0 and repeated"])
def test_annotation_ids_from_zero_or_repeated_score_as_clean_ones(ids):
    perfect = [{"image_id": 1, "category_id": 1, "bbox": a["bbox"], "score": 0.9}
               for a in _truth([1, 2, 3])["annotations"]]
    clean = coco_evaluate(_truth([1, 2, 3]), perfect)
    assert clean["map50"] == pytest.approx(1.0)
    assert coco_evaluate(_truth(ids), perfect) == clean


@pytest.mark.parametrize(("options", "message"), [
    ({"width": 100}, "width: must be in (0, 4], got 100"),
    ({"image_size": 100000}, "image_size: must be between 32 and 4096, got 100000"),
    ({"dropout": 1.5}, "dropout: must be in [0, 1), got 1.5"),
    ({"label_smoothing": 1.0}, "label_smoothing: must be in [0, 1), got 1.0"),
    ({"warmup_epochs": float("nan")}, "warmup_epochs: must be >= 0, got nan"),
    ({"lr": float("inf")}, "lr: must be > 0, got inf"),
    ({"crop_scale": (1.0, 0.5)}, "crop_scale: need 0 < low <= high <= 1, got [1.0, 0.5]"),
    ({"synthetic_train_size": -5}, "synthetic_train_size: must be > 0, got -5"),
    ({"device": "tpu9"}, "device: unknown 'tpu9'"),
    ({"device": "cuda:7"}, "device: cuda:7 asked for, but this machine has"),
])
def test_option_values_out_of_range_are_one_line_naming_the_option(options, message):
    from mobilenets.tasks.classification import ConfigError, make_config

    with pytest.raises(ConfigError) as info:
        make_config(**options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_detection_options_out_of_range(tmp_path):
    from mobilenets.recipes import ConfigError
    from mobilenets.tasks.detection.config import make_detect_config

    for options, message in (({"width": 50}, "width: must be in (0, 4]"), ({"image_size": 8192}, "image_size: must"),
                             ({"synthetic_val_size": 0}, "synthetic_val_size: must be > 0")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            make_detect_config(**options)
    with pytest.raises(ConfigError, match=r": a folder, not a YAML recipe"):
        make_detect_config(tmp_path)


def _classifier_file(tmp_path: Path, config_text: str | None = None) -> Path:
    import json

    from safetensors.torch import load_file, save_file

    import mobilenets

    path = tmp_path / "good.safetensors"
    model = mobilenets.create_model("mobilenet_v3_small", width_mult=0.25, num_classes=3)
    mobilenets.save(model, path, meta={"classes": ["a", "b", "c"], "preprocess": {
        "image_size": 32, "resize": 36, "mean": [0.5] * 3, "std": [0.5] * 3}})
    if config_text is None:
        return path
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(path)), str(bad), metadata={"mobilenets.config": config_text, "format": "pt",
                                                        "mobilenets.meta": json.dumps({"classes": ["a", "b", "c"]})})
    return bad


@pytest.mark.parametrize(("config", "message"), [
    ('{"name": "mobilenet_v3_small", "width_mult": 1000, "num_classes": 3}', "its config does not describe a "
                                                                             "model (width_mult must be in (0, 4]"),
    ('{"name": "mobilenet_v3_small", "width_mult": 2, "num_classes": 3}', "does not fit mobilenet_v3_small("
                                                                          "width_mult=2"),
    ("{oops", "its mobilenets.config metadata is not valid JSON"),
    ("[1, 2]", "its mobilenets.config metadata is a list, not a JSON object"),
    ('{"width_mult": 0.25}', "its config does not describe a model"),
    ('{"name": "mobilenet_v3_small", "width_mult": 0.25, "num_classes": 3, "wings": 2}', "has no option 'wings'"),
])
def test_malformed_checkpoint_metadata_is_one_line_naming_the_file(tmp_path, config, message):
    """A config that claims width 2 is refused from the tensor shapes (on the meta device), before memory is spent."""
    import mobilenets
    from mobilenets.weights import WeightsError

    path = _classifier_file(tmp_path, config)
    with pytest.raises(WeightsError) as info:
        mobilenets.load(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_detector_is_not_loaded_as_a_classifier(detector_run):
    import mobilenets
    from mobilenets.weights import WeightsError

    out, _ = detector_run
    with pytest.raises(WeightsError, match=r"best\.safetensors: a detector; load it with"):
        mobilenets.load(out / "best.safetensors")


def test_a_corrupt_coco_image_is_skipped_and_counted_like_a_missing_one(tmp_path):
    from mobilenets.tasks.detection.coco import CocoDetection
    from mobilenets.tasks.detection.synthetic import ANNOTATION_FILE, SyntheticDetection, write_coco

    write_coco(SyntheticDetection("train", size=64, length=4), tmp_path)
    images = sorted(p for p in tmp_path.iterdir() if p.suffix == ".png")
    images[0].write_bytes(images[0].read_bytes()[:100])  # truncated
    images[1].unlink()
    data = CocoDetection(tmp_path / ANNOTATION_FILE, tmp_path)
    assert len(data) == 2 and [data[i][0].size for i in range(2)] == [(64, 64)] * 2
    assert sorted(path.name for path, _ in data.skipped) == sorted(p.name for p in images[:2])
    assert {path.name: reason for path, reason in data.skipped}[images[1].name] == "no such file"


def test_boxes_without_area_are_left_out_and_counted(tmp_path, caplog):
    import json

    from mobilenets.tasks.detection.coco import CocoDetection

    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    boxes = [[4, 4, 20, 20], [30, 10, -6, 12], [10, 10, 8, 0], [70, 10, 5, 5]]  # fine, negative, flat, outside
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
            "annotations": [{"id": i, "image_id": 1, "category_id": 1, "bbox": b} for i, b in enumerate(boxes, 1)],
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    data = CocoDetection(tmp_path / "a.json", tmp_path)
    assert data[0][1]["boxes"].tolist() == [[4, 4, 24, 24]] and [a["id"] for a in data.coco["annotations"]] == [1]
    assert data.dropped == ["annotation 2: bbox [30, 10, -6, 12]", "annotation 3: bbox [10, 10, 8, 0]",
                            "annotation 4: bbox [70, 10, 5, 5]"]
    assert "a.json: 3 annotations left out, no area inside the image (annotation 2: bbox [30, 10, -6, 12];" \
        in caplog.text


def test_a_string_category_id_is_one_line_naming_the_file(tmp_path):
    import json

    from mobilenets.data import DataError
    from mobilenets.tasks.detection.coco import CocoDetection
    from mobilenets.tasks.detection.synthetic import ANNOTATION_FILE, SyntheticDetection, write_coco

    write_coco(SyntheticDetection("train", size=64, length=2), tmp_path)
    coco = json.loads((tmp_path / ANNOTATION_FILE).read_text())
    coco["categories"][0]["id"] = "1"
    (tmp_path / ANNOTATION_FILE).write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"_annotations\.coco\.json: category id '1' is not an integer"):
        CocoDetection(tmp_path / ANNOTATION_FILE, tmp_path)


def test_calibration_skips_a_corrupt_image_and_fails_only_when_none_is_left(tmp_path, caplog):
    from mobilenets.data.transforms import default_preprocess
    from mobilenets.deploy import calibration_batches

    for i in range(3):
        Image.new("RGB", (40, 40), (60 * i, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "3.png").write_bytes(b"not a png")
    batches = list(calibration_batches(tmp_path, default_preprocess(32), batch_size=2))
    assert [len(b) for b in batches] == [2, 1] and "3.png" in caplog.text
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(b"")
    with pytest.raises(ValueError, match="none of its images can be read"):
        list(calibration_batches(tmp_path, default_preprocess(32)))


def test_file_and_class_names_that_are_not_utf8_are_logged_plotted_and_printed(tmp_path, capsys):
    """Linux folder names are bytes: one that is not UTF-8 reaches Python as surrogates, which strict UTF-8
    logging, matplotlib and a strict stdout refuse."""
    import os
    import subprocess
    import sys

    from mobilenets.cli import main
    from mobilenets.tasks.classification import train

    root = os.fsencode(tmp_path / "data")
    try:
        for split in (b"train", b"val"):
            for i, name in enumerate((b"caf\xe9", b"plain")):
                folder = os.path.join(root, split, name)
                os.makedirs(folder)
                for j in range(8):
                    Image.new("RGB", (40, 40), (100 * i, 50, 50 + j)).save(os.fsdecode(os.path.join(folder,
                                                                                               b"im%d.png" % j)))
        for split in (b"train", b"val"):
            Path(os.fsdecode(os.path.join(root, split, b"plain", b"bad\xfe.jpg"))).write_bytes(b"nope")
    except OSError:
        pytest.skip("this file system wants UTF-8 names")
    run = tmp_path / "run"
    train(progress=False, data=str(tmp_path / "data"), epochs=1, batch_size=8, image_size=32, width=0.25,
          model="mobilenet_v3_small", workers=0, output=str(run))
    assert "skipped " in (run / "train.log").read_text() and "bad\\udcfe.jpg" in (run / "train.log").read_text()
    assert main(["eval", "--checkpoint", str(run / "best.safetensors")]) == 0
    assert (run / "confusion.png").is_file() and "caf\\udce9" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(run / "best.safetensors"), "--data", str(tmp_path / "data")]) == 0
    assert "(1 unreadable files skipped): 16 images" in capsys.readouterr().out
    done = subprocess.run([sys.executable, "-m", "mobilenets", "predict", "--checkpoint", str(run / "best.safetensors"),
                           str(tmp_path / "data" / "val")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert len(done.stdout.splitlines()) == 16 and "Traceback" not in done.stderr  # every readable image
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "bad\\udcfe.jpg" in done.stderr


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"width_mult": "a"}, TypeError, "width_mult must be a number, got 'a'"),
    ({"width_mult": float("inf")}, ValueError, r"width_mult must be in \(0, 4\], got inf"),
    ({"width_mult": 50}, ValueError, r"width_mult must be in \(0, 4\], got 50"),
    ({"num_classes": 2.5}, TypeError, "num_classes must be an integer, got 2.5"),
    ({"dropout": "x"}, ValueError, r"dropout must be None or in \[0, 1\), got 'x'"),
    ({"minimal": "no"}, TypeError, "minimal must be True or False, got 'no'"),
])
def test_model_arguments_of_the_wrong_type_or_size_are_named(options, error, message):
    import mobilenets

    with pytest.raises(error, match=message):
        mobilenets.create_model("mobilenet_v3_small", **options)


def test_ctrl_c_is_one_line_with_exit_130_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    from mobilenets.cli import main
    from mobilenets.engine import trainer

    options = ["--model", "mobilenet_v3_small", "--width", "0.25", "--image-size", "32", "--synthetic-train-size",
               "32", "--synthetic-val-size", "16", "--batch-size", "16", "--epochs", "2", "--workers", "0",
               "--output", str(tmp_path / "run")]
    epochs = trainer.train_one_epoch

    def interrupted_in_epoch_2(*args, epoch, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt
        return epochs(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted_in_epoch_2)
    assert main(["train", *options]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "mobilenets: interrupted" and "Traceback" not in err
    assert "continue with --resume --output " + str(tmp_path / "run") in (tmp_path / "run" / "train.log").read_text()
    monkeypatch.setattr(trainer, "train_one_epoch", epochs)
    assert main(["train", *options, "--resume"]) == 0
    assert "after epoch 1 of 2" in (tmp_path / "run" / "train.log").read_text()
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 3  # the header and both epochs


def test_files_written_together_keep_the_old_ones_when_a_write_runs_out_of_room(tmp_path):
    import errno

    from mobilenets._atomic import OutputError, atomic_paths

    model, sidecar = tmp_path / "m.pte", tmp_path / "m.pte.json"
    model.write_text("old program")
    sidecar.write_text("old metadata")
    with pytest.raises(OutputError) as info, atomic_paths(model, sidecar) as (new_model, new_sidecar):
        new_model.write_text("new program")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(info.value).startswith(f"{model}, {sidecar}: could not be written (No space left on device)")
    assert model.read_text() == "old program" and sidecar.read_text() == "old metadata"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pte", "m.pte.json"]
    with pytest.raises(OutputError, match=f"^{sidecar}: could not be written"), atomic_paths(model, sidecar) as temps:
        raise OSError(errno.EFBIG, "File too large", str(temps[1]))
    scratch = str(tmp_path / "elsewhere" / "augmented.onnx")  # the writer's own file, not one of the outputs
    with pytest.raises(OSError) as info, atomic_paths(model, sidecar):
        raise OSError(errno.ENOSPC, "No space left on device", scratch)
    assert type(info.value) is OSError and info.value.filename == scratch
    assert model.read_text() == "old program" and sidecar.read_text() == "old metadata"
    with atomic_paths(model, sidecar) as (new_model, new_sidecar):
        new_model.write_text("new program")
        new_sidecar.write_text("new metadata")
    assert model.read_text() == "new program" and sidecar.read_text() == "new metadata"


def test_a_classifier_exported_at_another_resolution_records_that_preprocessing(classifier_run, tmp_path):
    from mobilenets.tasks.classification.checkpoint import load_classifier
    from mobilenets.tasks.classification.export import export_classifier
    from mobilenets.tasks.classification.predict import predict

    checkpoint = classifier_run[0] / "best.safetensors"
    trained = load_classifier(checkpoint).preprocess
    exported = export_classifier(checkpoint, "onnx", tmp_path / "48.onnx", resolution=48)
    preprocess = load_classifier(exported.path).preprocess
    assert (preprocess.image_size, preprocess.resize) == (48, round(48 * trained.resize / trained.image_size))
    assert (preprocess.mean, preprocess.std, preprocess.interpolation) == (trained.mean, trained.std,
                                                                           trained.interpolation)
    Image.new("RGB", (50, 40), (200, 30, 30)).save(tmp_path / "red.png")
    [answer] = predict(exported.path, [tmp_path / "red.png"], topk=2)
    assert answer.error is None and len(answer.classes) == 2


def test_a_recorded_recipe_from_another_machine_loads_and_is_checked_only_where_used(classifier_run, tmp_path):
    """A run made on a GPU machine with its data elsewhere: the model loads; its recipe (for `eval`
    without --data, or QAT) drops the device and names the missing data folder, with the file."""

    import mobilenets
    from mobilenets.recipes import ConfigError
    from mobilenets.tasks.classification.checkpoint import load_classifier, recorded_training
    from mobilenets.weights.io import save as save_model

    trained = load_classifier(classifier_run[0] / "best.safetensors")
    elsewhere = {**trained.meta["train_config"], "device": "cuda:3", "crop_scale": [0.5, 1.0]}
    path = tmp_path / "gpu.safetensors"
    save_model(trained.model, path, meta={**trained.meta, "train_config": elsewhere})
    assert mobilenets.load(path) is not None
    config = recorded_training(load_classifier(path))
    assert config.device == "auto" and config.crop_scale == (0.5, 1.0) and config.epochs == trained.meta[
        "train_config"]["epochs"]
    save_model(trained.model, path, meta={**trained.meta, "train_config": {**elsewhere, "data": "/gone/shapes"}})
    with pytest.raises(ConfigError, match=rf"^{path}: its train_config does not hold: data: /gone/shapes: no such"):
        recorded_training(load_classifier(path))


def test_a_classifier_saved_with_a_model_option_that_changes_nothing_still_loads_and_evaluates(classifier_run,
                                                                                                 tmp_path):
    """Saved before such options were refused (minimal with se=False): the model and its recorded recipe load
    without it."""
    import mobilenets
    from mobilenets.tasks.classification.checkpoint import load_classifier, recorded_training
    from mobilenets.weights.io import save as save_model

    trained = load_classifier(classifier_run[0] / "best.safetensors")
    model = mobilenets.create_model("mobilenet_v3_small", width_mult=0.25, minimal=True,
                                    num_classes=len(trained.classes))
    model.config["se"] = False
    recipe = {**trained.meta["train_config"], "model": "mobilenet_v3_small", "width": 0.25,
              "model_options": {"minimal": True, "se": False}}
    path = save_model(model, tmp_path / "old.safetensors", meta={**trained.meta, "train_config": recipe})
    assert recorded_training(load_classifier(path)).model_options == {"minimal": True}


def test_an_experiment_that_fails_before_any_run_finishes_leaves_no_folder_to_block_its_retry(tmp_path, capsys):
    from mobilenets.cli import main

    (tmp_path / "empty").mkdir()  # no class folders: found when the first run reads its data
    argv = ["experiment", "se", "--backends", "none", "--seeds", "1", "--output", str(tmp_path / "ex")]
    assert main([*argv, "--data", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"mobilenets: error: {tmp_path / 'empty'}: expected train/ and val/ folders")
    assert not (tmp_path / "ex").exists()
