"""Detection data: the synthetic set is deterministic and agrees with its COCO export, COCO files are read strictly,
layouts are found, and the box-aware transforms move boxes with the pixels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from mobilenets.data import DataError
from mobilenets.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mobilenets.tasks.detection.coco import CocoDetection, find_coco_layout
from mobilenets.tasks.detection.synthetic import ANNOTATION_FILE, MAX_OBJECTS, SyntheticDetection, write_coco
from mobilenets.tasks.detection.transforms import (
    boxes_to_input,
    boxes_to_original,
    collate,
    eval_transform,
    letterbox,
    train_transform,
)

SIZE = 64


def small_set(split: str = "train", **options: Any) -> SyntheticDetection:
    return SyntheticDetection(split, size=SIZE, length=12, **options)


# --- SyntheticDetection ---

def test_same_seed_gives_identical_images_and_boxes_in_any_order():
    forward, backward = small_set(seed=3), small_set(seed=3)
    late_first = [backward[i] for i in reversed(range(12))][::-1]
    for (image, target), (image2, target2) in zip((forward[i] for i in range(12)), late_first, strict=True):
        assert image.tobytes() == image2.tobytes()
        assert torch.equal(target["boxes"], target2["boxes"]) and torch.equal(target["labels"], target2["labels"])


def test_different_index_seed_or_split_gives_different_images():
    data = small_set()
    assert data[0][0].tobytes() != data[1][0].tobytes()
    assert data[0][0].tobytes() != small_set(seed=1)[0][0].tobytes()
    assert data[0][0].tobytes() != small_set("val")[0][0].tobytes()


def test_targets_are_valid_boxes_inside_the_image_with_labels_in_range():
    data = SyntheticDetection(size=SIZE, length=40, max_objects=MAX_OBJECTS)
    counts = []
    for index in range(len(data)):
        image, target = data[index]
        boxes, labels = target["boxes"], target["labels"]
        assert image.mode == "RGB" and image.size == (SIZE, SIZE) and target["image_id"] == index + 1
        assert boxes.dtype == torch.float32 and labels.dtype == torch.int64 and boxes.shape == (len(labels), 4)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= SIZE).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        assert ((labels >= 0) & (labels < len(data.classes))).all()
        counts.append(len(labels))
    assert min(counts) >= 1 and max(counts) <= MAX_OBJECTS and max(counts) > 6


def test_object_sizes_follow_the_scale_range():
    data = SyntheticDetection(size=SIZE, length=30, min_scale=0.2, max_scale=0.3)
    sides = torch.cat([data[i][1]["boxes"] for i in range(len(data))])
    sides = torch.maximum(sides[:, 2] - sides[:, 0], sides[:, 3] - sides[:, 1]) / SIZE
    assert sides.min() > 0.2 * 0.7 and sides.max() <= 0.3 + 1e-6  # rotated shapes fill 70-100% of their diameter


def test_boxes_enclose_the_drawn_shape():
    """With one object and no clutter, pixels far from the background colour lie in the box and reach its edges."""
    data = SyntheticDetection(size=SIZE, length=8, max_objects=1, clutter=0)
    for index in range(len(data)):
        image, target = data[index]
        pixels = np.asarray(image, dtype=np.float32)
        corner = np.median(pixels[:3, :3].reshape(-1, 3), axis=0)
        ys, xs = np.nonzero(np.linalg.norm(pixels - corner, axis=2) > 80)
        drawn = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert torch.allclose(drawn, target["boxes"][0], atol=1.5)


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="max_objects"):
        SyntheticDetection(max_objects=MAX_OBJECTS + 1)
    with pytest.raises(ValueError, match="min_scale"):
        SyntheticDetection(min_scale=0.5, max_scale=0.2)
    with pytest.raises(ValueError, match="split"):
        SyntheticDetection("test")


def xyxy(bbox: list[float]) -> list[float]:
    return [bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]


def test_to_coco_matches_the_items():
    data = small_set()
    coco = data.to_coco()
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(data.classes) + 1))
    assert [i["id"] for i in coco["images"]] == list(range(1, 13))
    for index in range(len(data)):
        target = data[index][1]
        annotations = [a for a in coco["annotations"] if a["image_id"] == index + 1]
        assert torch.allclose(torch.tensor([xyxy(a["bbox"]) for a in annotations]), target["boxes"])
        assert [a["category_id"] - 1 for a in annotations] == target["labels"].tolist()


def test_write_coco_reads_back_as_the_same_boxes_and_labels(tmp_path):
    data = SyntheticDetection("val", size=SIZE, length=4)
    annotation_file = write_coco(data, tmp_path / "val")
    assert annotation_file == tmp_path / "val" / ANNOTATION_FILE
    read = CocoDetection(annotation_file, tmp_path / "val")
    assert len(read) == 4 and read.classes == data.classes and read.skipped == []
    evaluator_ground_truth = COCO()
    evaluator_ground_truth.dataset = read.coco
    evaluator_ground_truth.createIndex()
    assert len(evaluator_ground_truth.getAnnIds()) == len(data.to_coco()["annotations"])
    for index in range(4):
        (image, target), (image2, target2) = data[index], read[index]
        assert image.tobytes() == image2.tobytes() and target["image_id"] == target2["image_id"]
        assert torch.allclose(target["boxes"], target2["boxes"]) and torch.equal(target["labels"], target2["labels"])


# --- CocoDetection ---

def coco_folder(tmp_path: Path, annotations: list[dict[str, Any]], **extra: Any) -> Path:
    """Three 40x30 images (ids 7, 8, 9; 9 is never written) and categories with ids 3 and 10."""
    images = [{"id": i, "file_name": f"im{i}.png", "width": 40, "height": 30} for i in (7, 8, 9)]
    for i in (7, 8):
        Image.new("RGB", (40, 30), (i, i, i)).save(tmp_path / f"im{i}.png")
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 10, "name": "dog"}, {"id": 3, "name": "cat"}], **extra}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def annotation(id: int, image_id: int, category_id: int, bbox: list[float], **extra: Any) -> dict[str, Any]:
    return {"id": id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


def test_coco_boxes_are_clipped_mapped_and_filtered(tmp_path):
    path = coco_folder(tmp_path, [
        annotation(1, 7, 10, [5, 5, 10, 10]),
        annotation(2, 7, 3, [30, -5, 20, 15]),  # clipped to [30, 0, 40, 10]
        annotation(3, 7, 3, [45, 5, 5, 5]),  # outside the image: no area left
        annotation(4, 7, 10, [1, 1, 5, 0]),  # zero height
        annotation(5, 7, 3, [0, 0, 40, 30], iscrowd=1),
        annotation(6, 9, 3, [1, 1, 5, 5]),  # on the missing image
    ])
    data = CocoDetection(path, tmp_path)
    assert data.classes == ["cat", "dog"] and data.category_ids == [3, 10]
    assert len(data) == 2 and data.skipped == [(tmp_path / "im9.png", "no such file")]
    image, target = data[0]
    assert image.size == (40, 30) and target["image_id"] == 7
    assert target["boxes"].tolist() == [[5, 5, 15, 15], [30, 0, 40, 10]]
    assert target["labels"].tolist() == [1, 0]
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    empty = data[1][1]
    assert empty["image_id"] == 8 and empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert [i["id"] for i in data.coco["images"]] == [7, 8]
    assert [a["id"] for a in data.coco["annotations"]] == [1, 2, 5]  # crowd kept for the evaluator
    assert data.coco["annotations"][1]["bbox"] == [30, 0, 10, 10]


@pytest.mark.parametrize(("text", "message"), [
    ('{"images": [', "not valid JSON .*line 1, column 13"),
    ('[1, 2]', "expected a JSON object"),
    ('{"images": [], "categories": []}', "no 'annotations' list"),
])
def test_malformed_annotation_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(DataError, match=f"broken.json: {message}"):
        CocoDetection(path, tmp_path)


def test_unknown_category_or_image_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"ann.json: annotation 1 refers to category id 4"):
        CocoDetection(coco_folder(tmp_path, [annotation(1, 7, 4, [0, 0, 1, 1])]), tmp_path)
    with pytest.raises(DataError, match=r"ann.json: annotation 2 refers to image id 99"):
        CocoDetection(coco_folder(tmp_path, [annotation(2, 99, 3, [0, 0, 1, 1])]), tmp_path)


def test_no_image_found_is_an_error_and_a_missing_file_is_named_when_read(tmp_path):
    path = coco_folder(tmp_path, [])
    with pytest.raises(DataError, match="none of the 3 images"):
        CocoDetection(path, tmp_path / "elsewhere")
    data = CocoDetection(path, tmp_path)
    (tmp_path / "im7.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"im7\.png"):
        data[0]


def test_an_image_of_another_size_than_its_entry_is_skipped_and_counted_or_an_error_once_read(tmp_path):
    """Found by the scan before training (skipped, counted, named), or, changed after it, when read."""
    path = coco_folder(tmp_path, [])
    Image.new("RGB", (30, 40)).save(tmp_path / "im8.png")
    data = CocoDetection(path, tmp_path)
    assert len(data) == 1 and data.skipped == [(tmp_path / "im8.png", "image is 30x40, not the 40x30 its "
                                                                      "annotations say"),
                                               (tmp_path / "im9.png", "no such file")]
    data = CocoDetection(coco_folder(tmp_path, []), tmp_path)
    Image.new("RGB", (30, 40)).save(tmp_path / "im8.png")
    with pytest.raises(DataError, match=r"im8\.png: image is 30x40 but .*ann\.json says 40x30"):
        data[1]


# --- find_coco_layout ---

def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")


def test_finds_the_coco_layout(tmp_path):
    touch(tmp_path / "annotations" / "instances_train2017.json")
    touch(tmp_path / "annotations" / "instances_val2017.json")
    (tmp_path / "train2017").mkdir()
    (tmp_path / "val2017").mkdir()
    layout = find_coco_layout(tmp_path)
    assert layout.train_json == tmp_path / "annotations" / "instances_train2017.json"
    assert (layout.train_images, layout.val_images) == (tmp_path / "train2017", tmp_path / "val2017")
    assert layout.description.startswith("COCO layout: annotations/instances_train2017.json + train2017/")


@pytest.mark.parametrize("val_name", ["valid", "val"])
def test_finds_the_export_layout(tmp_path, val_name):
    touch(tmp_path / "train" / ANNOTATION_FILE)
    touch(tmp_path / val_name / ANNOTATION_FILE)
    layout = find_coco_layout(tmp_path)
    assert (layout.train_json, layout.train_images) == (tmp_path / "train" / ANNOTATION_FILE, tmp_path / "train")
    assert (layout.val_json, layout.val_images) == (tmp_path / val_name / ANNOTATION_FILE, tmp_path / val_name)
    assert layout.description.startswith("export layout")


def test_other_folders_are_an_error_naming_both_layouts(tmp_path):
    touch(tmp_path / "train" / ANNOTATION_FILE)  # no validation split
    with pytest.raises(DataError, match=rf"{tmp_path}: .*instances_train.*COCO layout.*export layout"):
        find_coco_layout(tmp_path)


# --- transforms ---

def test_letterbox_round_trip_on_a_non_square_image():
    image = Image.new("RGB", (97, 41))
    boxes = torch.tensor([[0.0, 0.0, 97.0, 41.0], [10.5, 3.25, 50.0, 40.0]])
    pixels, info = letterbox(image, 64)
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.uint8
    assert info.pad == (0, 0) and info.original_size == (97, 41)
    on_input = boxes_to_input(boxes, info)
    assert torch.allclose(on_input[0], torch.tensor([0.0, 0, 64, 27]))  # 41 * 64 / 97 = 27.05 rows, then padding
    assert (pixels[:, 27:, :] == torch.tensor([124, 116, 104]).view(3, 1, 1)).all()
    assert torch.allclose(boxes_to_original(on_input, info), boxes, atol=1e-3)


def test_boxes_to_original_clips_to_the_image():
    _, info = letterbox(Image.new("RGB", (100, 50)), 50)
    assert boxes_to_original(torch.tensor([[-4.0, 10.0, 60.0, 40.0]]), info).tolist() == [[0, 20, 100, 50]]


def denormalise(image: torch.Tensor) -> torch.Tensor:
    return image * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)


def test_eval_transform_letterboxes_image_and_boxes():
    image, target = SyntheticDetection(size=96, length=1)[0]
    tensor, out = eval_transform(64)(image, target)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
    assert torch.allclose(out["boxes"], target["boxes"] * 64 / 96)
    assert torch.equal(out["labels"], target["labels"]) and out["image_id"] == 1
    assert torch.allclose(boxes_to_original(out["boxes"], out["letterbox"]), target["boxes"], atol=1e-3)


def test_train_transform_without_augmentation_equals_the_letterbox():
    image, target = SyntheticDetection(size=96, length=1)[0]
    tensor, out = train_transform(64, flip=False, scale=(1.0, 1.0), colour=False)(image, target)
    expected, expected_target = eval_transform(64)(image, target)
    assert torch.allclose(out["boxes"], expected_target["boxes"], atol=1e-4)
    assert torch.equal(out["labels"], target["labels"])
    assert (tensor - expected).abs().max() < 0.05


def test_flip_mirrors_boxes_with_the_pixels_and_flip_off_never_flips():
    image = Image.new("RGB", (64, 64))
    image.paste((255, 255, 255), (4, 10, 20, 30))
    target = {"boxes": torch.tensor([[4.0, 10.0, 20.0, 30.0]]), "labels": torch.tensor([2]), "image_id": 1}
    seen = set()
    for seed in range(8):
        for flip in (True, False):
            torch.manual_seed(seed)
            tensor, out = train_transform(64, flip=flip, scale=(1.0, 1.0), colour=False)(image, target)
            box = out["boxes"][0].tolist()
            assert box in ([4, 10, 20, 30], [44, 10, 60, 30]) and (flip or box[0] == 4)
            seen.add(box[0])
            white = denormalise(tensor).mean(0) > 0.9
            ys, xs = torch.nonzero(white, as_tuple=True)
            assert [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1] == box
    assert seen == {4, 44}


@pytest.mark.parametrize("scale", [(0.6, 1.3), (1.8, 2.5)])  # the second crops whole rectangles away
def test_random_scale_crop_and_flip_keep_boxes_on_the_pixels(scale):
    """Two solid rectangles on a non-square image: after augmentation each box still frames its rectangle's pixels,
    and a box dropped by the crop takes its label with it."""
    colours = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    image = Image.new("RGB", (90, 60))
    image.paste((255, 0, 0), (5, 8, 35, 40))
    image.paste((0, 0, 255), (50, 20, 85, 55))
    target = {"boxes": torch.tensor([[5.0, 8, 35, 40], [50, 20, 85, 55]]), "labels": torch.tensor([0, 1]),
              "image_id": 1}
    transform = train_transform(64, scale=scale, colour=False)
    for seed in range(12):
        torch.manual_seed(seed)
        tensor, out = transform(image, target)
        pixels = denormalise(tensor)
        assert len(out["boxes"]) == len(out["labels"]) >= 1
        for box, label in zip(out["boxes"], out["labels"], strict=True):
            near = (pixels - colours[label].view(3, 1, 1)).abs().amax(0) < 0.3
            ys, xs = torch.nonzero(near, as_tuple=True)
            drawn = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            assert torch.allclose(drawn, box, atol=1.5), (seed, drawn, box)


def test_train_transform_is_deterministic_under_a_seed():
    image, target = SyntheticDetection(size=96, length=1)[0]
    transform = train_transform(64)
    results = []
    for _ in range(2):
        torch.manual_seed(5)
        results.append(transform(image, target))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1]["boxes"], results[1][1]["boxes"])


def test_collate_stacks_images_and_keeps_targets():
    data = small_set()
    transform = eval_transform(32)
    images, targets = collate([transform(*data[i]) for i in range(3)])
    assert images.shape == (3, 3, 32, 32) and [t["image_id"] for t in targets] == [1, 2, 3]
