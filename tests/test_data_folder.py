"""ImageFolder data: every image mode decodes to sensible RGB, bad files are skipped with reasons, layouts resolve."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenets.data import DataError, ImageFiles, load_rgb, resolve_image_folder, scan_image_folder
from mobilenets.data.folder import decode_rgb

SIZE = (12, 10)  # width, height


def save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def rgb_image(seed: int = 0, size: tuple[int, int] = SIZE) -> Image.Image:
    noise = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(noise, "RGB")


def half_transparent(mode: str, opaque: tuple[int, ...], clear: tuple[int, ...]) -> Image.Image:
    image = Image.new(mode, SIZE, clear)
    image.paste(opaque, (0, 0, SIZE[0] // 2, SIZE[1]))
    return image


def palette_image(transparent_index: int | None = None) -> Image.Image:
    image = Image.new("P", SIZE, 1)
    image.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, SIZE[0] // 2, SIZE[1]))
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


def sixteen_bit(value: int) -> Image.Image:
    image = Image.fromarray(np.full((SIZE[1], SIZE[0]), value, dtype=np.uint16))
    assert image.mode == "I;16"
    return image


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def make_mixed_class(folder: Path) -> None:
    """One file per image mode, three broken files and a hidden one."""
    save(Image.new("L", SIZE, 128), folder / "gray.png")
    save(half_transparent("LA", (0, 255), (0, 0)), folder / "gray_alpha.png")
    save(half_transparent("RGBA", (0, 0, 255, 255), (255, 0, 0, 0)), folder / "rgba.png")
    save(palette_image(), folder / "palette.png")
    save(palette_image(transparent_index=1), folder / "palette_transparent.png")
    save(Image.new("CMYK", SIZE, (0, 255, 255, 0)), folder / "cmyk.jpg")
    save(sixteen_bit(65535), folder / "white16.png")
    save(sixteen_bit(32768), folder / "mid16.png")
    save(Image.new("1", SIZE, 1), folder / "bilevel.png")
    save(rgb_image(), folder / "photo.jpg")
    (folder / "zero.jpg").write_bytes(b"")
    whole = jpeg_bytes(rgb_image(1, (64, 64)))
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.png").write_text("not an image\n")
    save(rgb_image(), folder / ".hidden.png")
    save(rgb_image(), folder / ".cache" / "thumb.png")


@pytest.fixture
def mixed_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    make_mixed_class(root / "mixed")
    save(rgb_image(2), root / "plain" / "a.png")
    return root


def pixel(path: Path, xy: tuple[int, int]) -> tuple[int, ...]:
    return load_rgb(path).getpixel(xy)


def test_every_mode_loads_as_rgb_of_the_right_size(mixed_root: Path):
    samples, _, _ = scan_image_folder(mixed_root)
    for path, _ in samples:
        image = load_rgb(path)
        assert image.mode == "RGB" and image.size == SIZE, path


def test_modes_convert_to_what_a_viewer_shows(mixed_root: Path):
    mixed = mixed_root / "mixed"
    assert pixel(mixed / "gray.png", (0, 0)) == (128, 128, 128)
    assert pixel(mixed / "gray_alpha.png", (0, 0)) == (0, 0, 0)
    assert pixel(mixed / "gray_alpha.png", (11, 0)) == (255, 255, 255)  # transparent: white, not black
    assert pixel(mixed / "rgba.png", (0, 0)) == (0, 0, 255)
    assert pixel(mixed / "rgba.png", (11, 0)) == (255, 255, 255)
    assert pixel(mixed / "palette.png", (0, 0)) == (0, 0, 255) and pixel(mixed / "palette.png", (11, 0)) == (255, 0, 0)
    assert pixel(mixed / "palette_transparent.png", (11, 0)) == (255, 255, 255)
    red, green, blue = pixel(mixed / "cmyk.jpg", (5, 5))
    assert red > 200 and green < 60 and blue < 60
    assert pixel(mixed / "white16.png", (0, 0)) == (255, 255, 255)
    assert pixel(mixed / "mid16.png", (0, 0)) == (128, 128, 128)  # scaled from 0..65535, not clipped at 255
    assert pixel(mixed / "bilevel.png", (0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path: Path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    rgb_image().save(tmp_path / "phone.jpg", exif=exif)
    assert load_rgb(tmp_path / "phone.jpg").size == (SIZE[1], SIZE[0])


def test_an_upload_is_decoded_at_the_smallest_jpeg_scale_that_covers_what_the_caller_needs():
    """An 800x600 phone photo stored sideways (EXIF orientation 6), needed at a quarter of its size: decoded at 1/4,
    upright, with its full upright size; a PNG has no such scales; a larger need decodes it whole."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").resize((800, 600)).save(buffer, "JPEG", exif=exif)
    photo = buffer.getvalue()
    asked: list[tuple[int, int]] = []

    def quarter(width: int, height: int) -> float:
        asked.append((width, height))
        return 0.25

    image, size = decode_rgb(photo, scale_for=quarter)
    assert (image.size, size, asked) == ((150, 200), (600, 800), [(600, 800)])
    assert decode_rgb(photo, scale_for=lambda w, h: 0.6)[0].size == (600, 800)
    assert decode_rgb(photo)[0].size == (600, 800)
    buffer = io.BytesIO()
    rgb_image(size=(80, 60)).save(buffer, "PNG")
    assert decode_rgb(buffer.getvalue(), scale_for=quarter)[0].size == (80, 60)


def test_float_and_32_bit_images_are_scaled(tmp_path: Path):
    save(Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)), tmp_path / "float.tif")
    save(Image.fromarray(np.full((4, 4), 30000, dtype=np.int32)), tmp_path / "int32.tif")
    assert pixel(tmp_path / "float.tif", (0, 0)) == (128, 128, 128)
    assert pixel(tmp_path / "int32.tif", (0, 0)) == (117, 117, 117)


def test_scan_skips_broken_files_with_reasons_and_ignores_hidden_ones(mixed_root: Path):
    samples, classes, skipped = scan_image_folder(mixed_root)
    assert classes == ["mixed", "plain"]
    reasons = {path.name: reason for path, reason in skipped}
    assert sorted(reasons) == ["notes.png", "truncated.jpg", "zero.jpg"]
    assert "empty" in reasons["zero.jpg"] and "truncated" in reasons["truncated.jpg"]
    assert all(reason and "\n" not in reason for reason in reasons.values())
    names = {path.name for path, _ in samples}
    assert len(samples) == 11 and not any(name.startswith(".") or name == "thumb.png" for name in names)
    assert {label for path, label in samples if path.name == "a.png"} == {1}


def test_unchecked_scan_skips_only_what_needs_no_decoding(mixed_root: Path):
    samples, _, skipped = scan_image_folder(mixed_root, check=False)
    assert [path.name for path, _ in skipped] == ["zero.jpg"]
    truncated = [s for s in samples if s[0].name == "truncated.jpg"]
    with pytest.raises(DataError, match=r"truncated\.jpg"):
        ImageFiles(truncated, ["mixed", "plain"])[0]


def test_links_are_followed_once_and_broken_or_looping_ones_skipped_and_counted(tmp_path: Path):
    save(rgb_image(0), tmp_path / "data" / "a" / "x.png")
    save(rgb_image(1), tmp_path / "elsewhere" / "y.png")
    a = tmp_path / "data" / "a"
    (a / "linked").symlink_to(tmp_path / "elsewhere")  # a linked folder: its images belong to class a
    (a / "gone.png").symlink_to("nowhere.png")
    (a / "self.png").symlink_to("self.png")
    (a / "up").symlink_to("..")  # the data folder: walking it would list class a again, inside class a
    (a / "more").symlink_to(tmp_path / "elsewhere")  # a folder listed already
    samples, _, skipped = scan_image_folder(tmp_path / "data")
    assert [path.relative_to(a).as_posix() for path, _ in samples] == ["linked/y.png", "x.png"]
    reasons = {path.name: reason for path, reason in skipped}
    assert reasons == {"gone.png": "broken symbolic link (to nowhere.png)", "self.png": "symbolic link loop",
                       "up": "symbolic link loop (to a folder already listed)",
                       "more": "symbolic link loop (to a folder already listed)"}
    assert {p.name for p, _ in scan_image_folder(tmp_path / "data", check=False)[2]} == set(reasons)


def test_images_over_the_pixel_limit_are_refused_from_their_header(tmp_path: Path, monkeypatch):
    """The file is cut after its header: the reason given is the size, so no pixel was decoded to find it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = save(rgb_image(size=(20, 10)), tmp_path / "big.png")
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"big\.png: 20x10 = 200 pixels, over the limit of 100 \(raise "
                                        r"PIL\.Image\.MAX_IMAGE_PIXELS"):
        load_rgb(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the user's way to allow any size
    with pytest.raises(DataError, match="truncated"):
        load_rgb(path)


def test_the_scan_decodes_large_images_one_at_a_time(tmp_path: Path, monkeypatch):
    """Its threads share a pixel budget of one image at the limit: two images over half of it never overlap."""
    import threading
    import time

    from mobilenets.data import folder

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    files = [save(rgb_image(i, size=(15, 15)), tmp_path / f"{i}.png") for i in range(6)]  # 225 pixels each
    decoding, most = [], [0]
    lock = threading.Lock()
    convert = folder._as_rgb

    def counted(image: Image.Image) -> Image.Image:
        with lock:
            decoding.append(image)
            most[0] = max(most[0], len(decoding))
        time.sleep(0.05)
        with lock:
            decoding.remove(image)
        return convert(image)

    monkeypatch.setattr(folder, "_as_rgb", counted)
    assert folder.find_problems(files) == dict.fromkeys(files)
    assert most[0] == 1


def test_image_files_applies_the_transform(mixed_root: Path):
    samples, classes, _ = scan_image_folder(mixed_root)
    dataset = ImageFiles(samples, classes, transform=lambda image: torch.tensor(image.size))
    size, label = dataset[len(dataset) - 1]
    assert size.tolist() == list(SIZE) and label == 1
    assert isinstance(ImageFiles(samples, classes)[0][0], Image.Image)


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert str(path) in message and "\n" not in message


def test_class_with_only_broken_files_is_an_error_naming_it(tmp_path: Path):
    save(rgb_image(), tmp_path / "good" / "a.png")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "zero.jpg").write_bytes(b"")
    (tmp_path / "bad" / "notes.png").write_text("text")
    with pytest.raises(DataError, match=r"no readable images \(2 files skipped") as error:
        scan_image_folder(tmp_path)
    assert_one_line_naming(error, tmp_path / "bad")


@pytest.mark.parametrize("problem", ["missing", "file", "no class folders", "empty class folders"])
def test_unusable_roots_are_one_line_errors_naming_the_path(tmp_path: Path, problem: str):
    root = tmp_path / "data"
    if problem == "file":
        root.write_text("x")
    elif problem == "no class folders":
        save(rgb_image(), root / "loose.png")
    elif problem == "empty class folders":
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
    with pytest.raises(DataError) as error:
        scan_image_folder(root)
    assert_one_line_naming(error, root)


def make_classes(root: Path, classes: dict[str, int]) -> None:
    for name, count in classes.items():
        for i in range(count):
            save(rgb_image(i), root / name / f"{i:02d}.png")


def test_train_and_val_folders_are_used_as_they_are(tmp_path: Path):
    make_classes(tmp_path / "train", {"cat": 3, "dog": 2})
    make_classes(tmp_path / "val", {"cat": 1, "dog": 1})
    split = resolve_image_folder(tmp_path)
    assert split.layout == "train/val folders" and split.classes == ["cat", "dog"]
    assert len(split.train) == 5 and len(split.val) == 2 and split.skipped == []
    assert all(path.is_relative_to(tmp_path / "val") for path, _ in split.val)


def test_train_and_val_with_different_classes_is_an_error_naming_them(tmp_path: Path):
    make_classes(tmp_path / "train", {"cat": 1, "dog": 1})
    make_classes(tmp_path / "val", {"cat": 1, "cow": 1})
    with pytest.raises(DataError, match="only in train: dog; only in val: cow"):
        resolve_image_folder(tmp_path)


def test_val_split_is_stratified_deterministic_and_disjoint(tmp_path: Path):
    make_classes(tmp_path, {"a": 10, "b": 20})
    split = resolve_image_folder(tmp_path, val_split=0.3, seed=1)
    assert split.layout == "one folder split by --val-split"
    val_labels = [label for _, label in split.val]
    assert val_labels.count(0) == 3 and val_labels.count(1) == 6
    train_paths, val_paths = {p for p, _ in split.train}, {p for p, _ in split.val}
    assert not train_paths & val_paths and len(train_paths | val_paths) == 30
    assert resolve_image_folder(tmp_path, val_split=0.3, seed=1) == split
    assert resolve_image_folder(tmp_path, val_split=0.3, seed=2).val != split.val


def test_no_layout_and_bad_fraction_are_errors(tmp_path: Path):
    make_classes(tmp_path, {"a": 2, "b": 2})
    with pytest.raises(DataError, match="expected train/ and val/") as error:
        resolve_image_folder(tmp_path)
    assert_one_line_naming(error, tmp_path)
    with pytest.raises(ValueError, match="val_split"):
        resolve_image_folder(tmp_path, val_split=1.5)
