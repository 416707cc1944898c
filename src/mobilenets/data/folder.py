"""Real images in the ImageFolder layout (`root/<class>/<image>`): robust decoding, scanning and splitting.

Every image mode Pillow opens becomes 8-bit RGB the way a person would see it; unreadable files are reported
once, by name and reason, at scan time instead of crashing a training run hours in.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm import tqdm

from .. import cpu
from .._words import counted

log = logging.getLogger(__name__)

Sample = tuple[Path, int]
Skipped = tuple[Path, str]

_PROGRESS_MIN_FILES = 200
_CHECK_THREADS = min(4, cpu.available_cores())  # decoding releases the GIL; more threads mostly wait on the disk
_TRANSPARENT_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_DEFAULT_PIXEL_LIMIT = 89_478_485  # Pillow's own default for Image.MAX_IMAGE_PIXELS

# Images over the pixel limit are refused with a DataError naming the file (see _require_pixel_limit), so Pillow's
# warning about the same images would only repeat it, unattributed.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class DataError(ValueError):
    """A dataset problem the user must fix; the one-line message names the file or folder."""


def escaped_name(name: str) -> str:
    """`name` as UTF-8 text: a folder name that was not UTF-8 (its bytes kept as surrogates) with those bytes
    escaped (`\\xff`), so it can be drawn, sent as JSON or written where only UTF-8 goes."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte made
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


class TooManyPixels(DataError):
    """An image whose header declares more pixels than allowed (refused before decoding)."""


def load_rgb(path: str | Path) -> Image.Image:
    """Decode any image Pillow reads into 8-bit RGB, fully (so truncated files fail here); DataError if it cannot.

    EXIF orientation is applied; transparency is composited onto white; 16/32-bit integer images are scaled from
    their type's range (0..65535, or the image maximum for 32-bit values beyond it); float images are taken as
    0..1 when their maximum is at most 1, else scaled by the maximum. Images with more pixels than
    `PIL.Image.MAX_IMAGE_PIXELS` are refused from their header, before any pixel is decoded.
    """
    try:
        return _decode_rgb(Path(path))
    except Exception as e:  # Pillow's decoders raise many types (OSError, SyntaxError, ValueError, struct.error...)
        raise DataError(f"{path}: {_reason(e)}") from e


def decode_rgb(data: bytes, *, max_pixels: int | None = None,
               scale_for: Callable[[int, int], float] | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """`load_rgb` for an image in memory (e.g. an upload): the image and its full upright (width, height);
    DataError with the reason. Images over `max_pixels` (default and at most Pillow's MAX_IMAGE_PIXELS) are refused
    from their header, before any pixel is decoded.

    `scale_for(width, height)` is the factor the caller will resize the image by: a JPEG is then decoded at the
    smallest of its DCT scales (1/8, 1/4, 1/2) that still gives at least that many pixels, Pillow's draft mode as
    `Image.thumbnail` uses it, which is several times faster for photos larger than a network's input. What
    `scale_for` itself raises propagates as it is: a bug of the caller's, not bad input."""
    with _as_data_error():
        image = Image.open(io.BytesIO(data))
    with image:
        with _as_data_error():
            _require_pixel_limit(image, max_pixels)
            size = _upright_size(image)
        scale = 1.0 if scale_for is None else scale_for(*size)  # outside: the caller's own errors are not bad input
        with _as_data_error():
            if scale < 1:
                image.draft(None, (max(1, math.ceil(image.width * scale)), max(1, math.ceil(image.height * scale))))
            return _loaded_rgb(image), size


@contextmanager
def _as_data_error() -> Iterator[None]:
    """What Pillow raises in the block (many types) as a DataError with the reason, as in load_rgb."""
    try:
        yield
    except DataError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's own refusal at open, of images twice its limit
        raise TooManyPixels(f"{_reason(e)} (raise PIL.Image.MAX_IMAGE_PIXELS to allow larger images)") from e
    except Exception as e:
        raise DataError(_reason(e)) from e


def _upright_size(image: Image.Image) -> tuple[int, int]:
    """The (width, height) of `image` once its EXIF orientation is applied."""
    turned = image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)  # the orientations that swap the axes
    return (image.height, image.width) if turned else image.size


def _decode_rgb(path: Path, budget: _PixelBudget | None = None) -> Image.Image:
    if problem := _file_problem(path):
        raise ValueError(problem)
    with Image.open(path) as image:
        return _opened_rgb(image, budget)


def _opened_rgb(image: Image.Image, budget: _PixelBudget | None = None) -> Image.Image:
    pixels = _require_pixel_limit(image)
    with budget.hold(pixels) if budget else nullcontext():
        return _loaded_rgb(image)


def _loaded_rgb(image: Image.Image) -> Image.Image:
    image.load()
    ImageOps.exif_transpose(image, in_place=True)
    return _as_rgb(image)


def _as_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _HIGH_BIT_MODES:
        return Image.fromarray(_to_uint8(np.asarray(image)), "L").convert("RGB")
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale one-channel 16-bit, 32-bit integer or float pixels to 0..255 (see `load_rgb`), in place in one float32
    copy: float64 temporaries made a large 16-bit image cost over 25 bytes per pixel."""
    is_float = values.dtype.kind == "f"
    scaled = values.astype(np.float32)
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.maximum(scaled, 0, out=scaled)
    peak = float(scaled.max(initial=0))
    full_scale = (1.0 if peak <= 1 else peak) if is_float else max(peak, 65535.0)
    scaled *= 255 / full_scale
    return np.rint(scaled, out=scaled).astype(np.uint8)


def _pixel_limit() -> int:
    """Pillow's MAX_IMAGE_PIXELS, which users raise (or set to None) to allow larger images."""
    return Image.MAX_IMAGE_PIXELS or 0


def _require_pixel_limit(image: Image.Image, max_pixels: int | None = None) -> int:
    """The image's pixel count from its header; TooManyPixels when it is over `max_pixels` or Pillow's limit (a
    decompression bomb guard: a few hundred KB of PNG can decode to gigabytes)."""
    width, height = image.size
    pillow = _pixel_limit()
    limit = min(max_pixels, pillow) if max_pixels and pillow else (max_pixels or pillow)
    if limit and width * height > limit:
        how = "raise PIL.Image.MAX_IMAGE_PIXELS to allow larger images" if limit == pillow else "the server's limit"
        raise TooManyPixels(f"{width}x{height} = {width * height:,} pixels, over the limit of {limit:,} ({how})")
    return width * height


class _PixelBudget:
    """Bounds how many pixels the scan's threads decode at once, so their memory is that of one large image."""

    def __init__(self, pixels: int) -> None:
        self.capacity, self.in_use = pixels, 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self.in_use == 0 or self.in_use + pixels <= self.capacity)
            self.in_use += pixels
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= pixels
                self._changed.notify_all()


def _reason(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can read"
    return " ".join(str(error).split()) or type(error).__name__


def _problem(path: Path, budget: _PixelBudget | None = None, size: tuple[int, int] | None = None) -> str | None:
    """Why `path` cannot be used as an image (of `size`, if given: upright width, height), or None if it can."""
    try:
        decoded = _decode_rgb(path, budget).size
    except Exception as e:  # see load_rgb
        return _reason(e)
    if size is not None and decoded != tuple(size):
        return f"image is {decoded[0]}x{decoded[1]}, not the {size[0]}x{size[1]} its annotations say"
    return None


def _file_problem(path: Path) -> str | None:
    """What is wrong with `path` as a file, before reading it: a broken or looping link, or no bytes."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"broken symbolic link (to {os.readlink(path)})" if path.is_symlink() else "no such file"
    except OSError as e:
        return "symbolic link loop" if path.is_symlink() else (e.strerror or str(e))
    return "empty file (0 bytes)" if size == 0 else None


def scan_image_folder(root: str | Path, *, check: bool = True) -> tuple[list[Sample], list[str], list[Skipped]]:
    """List `root/<class>/**/<image>` as (samples, classes sorted by folder name, skipped files with reasons).

    check=True decodes every file to find corrupt ones; check=False only skips empty files, broken links and names
    without an image extension (unreadable files then fail when loaded). Hidden files and folders are ignored;
    linked folders are followed, and a link back into a folder already listed is skipped as a loop.
    """
    root = Path(root)
    class_dirs = _class_dirs(root)
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    files = {}
    for class_dir in class_dirs:
        files[class_dir.name], unlisted = _walk_files(class_dir)
        skipped += unlisted
    problems = find_problems([f for fs in files.values() for f in fs], check)
    for label, class_dir in enumerate(class_dirs):
        for path in files[class_dir.name]:
            if problems[path] is None:
                samples.append((path, label))
            else:
                skipped.append((path, problems[path]))
    _require_images(root, class_dirs, samples, skipped)
    return samples, [d.name for d in class_dirs], skipped


def _require_folder(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such folder")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")


def _class_dirs(root: Path) -> list[Path]:
    _require_folder(root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class folders (expected {root}/<class name>/<image files>)")
    return class_dirs


def _walk_files(folder: Path) -> tuple[list[Path], list[Skipped]]:
    """Everything under `folder` that is not a folder (broken links included), sorted, and the folders that could
    not be listed, with why. Hidden names are left out; linked folders are followed once each, and a link to a
    folder already walked, or to one that holds the walk (an ancestor), is a loop."""
    seen = {Path(os.path.realpath(folder))}
    files: list[Path] = []
    unlisted: list[Skipped] = []

    def unreadable(error: OSError) -> None:
        unlisted.append((Path(error.filename), f"cannot list folder ({error.strerror})"))

    for parent, folders, names in os.walk(folder, onerror=unreadable, followlinks=True):
        files += (Path(parent, name) for name in names if not name.startswith("."))
        here = Path(os.path.realpath(parent))
        folders.sort()  # which of two links to one folder is followed does not depend on the file system
        for name in list(folders):
            target = Path(os.path.realpath(Path(parent, name)))
            if name.startswith(".") or target in seen or here.is_relative_to(target):
                folders.remove(name)
                if not name.startswith("."):
                    unlisted.append((Path(parent, name), "symbolic link loop (to a folder already listed)"))
            else:
                seen.add(target)
    return sorted(files), unlisted


def image_files(folder: str | Path) -> list[Path]:
    """Image files under `folder` by extension (any depth, sorted, hidden files and folders left out)."""
    suffixes = Image.registered_extensions()
    return [p for p in _walk_files(Path(folder))[0] if p.suffix.lower() in suffixes]


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders replaced by the image files below them, sorted; DataError for a folder without."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            if not (found := image_files(item)):
                raise DataError(f"{item}: no image files in this folder")
            paths += found
        else:
            paths.append(item)
    return paths


def find_problems(files: list[Path], check: bool = True, sizes: dict[Path, tuple[int, int]] | None = None
                  ) -> dict[Path, str | None]:
    """Why each file cannot be used as an image (None: it can), decoding them on a few threads when `check`;
    with `sizes`, a file whose upright size is not the one given is a problem too."""
    if not check:
        return {f: _quick_problem(f) for f in files}
    budget = _PixelBudget(_pixel_limit() or _DEFAULT_PIXEL_LIMIT)
    with ThreadPoolExecutor(_CHECK_THREADS) as pool:
        results = pool.map(lambda path: _problem(path, budget, (sizes or {}).get(path)), files)
        progress = tqdm(results, total=len(files), desc="checking images", unit="file",
                        disable=len(files) <= _PROGRESS_MIN_FILES)
        return dict(zip(files, progress, strict=True))


def _quick_problem(path: Path) -> str | None:
    """The checks that need no decoding: an image file extension, and a file (not a broken link) with bytes."""
    if path.suffix.lower() not in Image.registered_extensions():
        return "not an image file extension"
    return _file_problem(path)


def _require_images(root: Path, class_dirs: list[Path], samples: list[Sample], skipped: list[Skipped]) -> None:
    if not samples:
        raise DataError(f"{root}: no readable images in any class folder ({_describe_skipped(skipped)})")
    found = {label for _, label in samples}
    for label, class_dir in enumerate(class_dirs):
        if label not in found:
            inside = [s for s in skipped if s[0].is_relative_to(class_dir)]
            raise DataError(f"{class_dir}: no readable images ({_describe_skipped(inside)})")


def _describe_skipped(skipped: list[Skipped], shown: int = 3) -> str:
    if not skipped:
        return "no files"
    listed = ", ".join(f"{path.name} [{reason}]" for path, reason in skipped[:shown])
    more = f", and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"{counted(len(skipped), 'file')} skipped: {listed}{more}"


class ImageFiles(Dataset):
    """(path, label) samples as a dataset of `(transform(RGB image), label)`; DataError names any unreadable file."""

    def __init__(self, samples: Iterable[Sample], classes: list[str],
                 transform: Callable[[Image.Image], Any] | None = None) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        image = load_rgb(path)
        return (self.transform(image) if self.transform else image), label


@dataclass
class FolderSplit:
    """Training and validation samples resolved from a data folder, with the classes and every skipped file."""

    train: list[Sample]
    val: list[Sample]
    classes: list[str]
    skipped: list[Skipped]
    layout: str  # "train/val folders" or "one folder split by --val-split"


def resolve_image_folder(data: str | Path, val_split: float | None = None, seed: int = 0) -> FolderSplit:
    """`data/train` + `data/val` class folders if both exist, else one folder of class folders split by `val_split`.

    The split is stratified (each class split in the same proportion) and depends only on the files and `seed`.
    A folder holding only `train/` is split as that one folder.
    """
    data = Path(data)
    _require_folder(data)
    if (data / "train").is_dir() and (data / "val").is_dir():
        if val_split is not None:
            log.warning("%s has train/ and val/ folders: ignoring val_split=%s", data, val_split)
        return _train_val_folders(data)
    if val_split is None:
        raise DataError(f"{data}: expected train/ and val/ folders of class folders, or one folder of class "
                        f"folders with a validation fraction (--val-split)")
    if not 0 < val_split < 1:
        raise ValueError(f"val_split must be between 0 and 1 (exclusive), got {val_split}")
    folder = data / "train" if (data / "train").is_dir() else data
    samples, classes, skipped = scan_image_folder(folder)
    train, val = _stratified_split(samples, val_split, seed)
    return FolderSplit(train, val, classes, skipped, "one folder split by --val-split")


def _train_val_folders(data: Path) -> FolderSplit:
    train, classes, skipped_train = scan_image_folder(data / "train")
    val, val_classes, skipped_val = scan_image_folder(data / "val")
    if classes != val_classes:
        only_train, only_val = sorted(set(classes) - set(val_classes)), sorted(set(val_classes) - set(classes))
        raise DataError(f"{data}: train/ and val/ have different class folders (only in train: "
                        f"{', '.join(only_train) or '-'}; only in val: {', '.join(only_val) or '-'})")
    return FolderSplit(train, val, classes, skipped_train + skipped_val, "train/val folders")


def _stratified_split(samples: list[Sample], val_split: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Per class, a seeded shuffle sends round(n * val_split) images (at least 1, and never all) to validation."""
    by_label: dict[int, list[Sample]] = {}
    for sample in samples:
        by_label.setdefault(sample[1], []).append(sample)
    train: list[Sample] = []
    val: list[Sample] = []
    for label, group in sorted(by_label.items()):
        order = np.random.default_rng((seed, label)).permutation(len(group))
        n_val = min(max(1, round(len(group) * val_split)), len(group) - 1)
        val += sorted(group[i] for i in order[:n_val])
        train += sorted(group[i] for i in order[n_val:])
    return train, val
