"""Atomic file writes: a temp file in the same folder, renamed over the target only once complete."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot be written; the message is one line naming it."""


def writable(path: str | Path, *, folder: bool = False, keeping: Iterable[str | Path] = ()) -> Path:
    """`path` (a file, or with `folder` a folder) checked writable before the work that produces it, creating
    nothing: a probe file is written and removed in its nearest existing folder (the writers make the rest).
    OutputError names the path and the reason, also when `path` is one of the inputs in `keeping`."""
    path = Path(path)
    directory = path if folder else path.parent
    if not folder:
        _replaceable(path)
        if path.exists() and (kept := next((k for k in keeping if Path(k).exists() and path.samefile(k)), None)):
            raise OutputError(f"{path}: this is the input {kept}; it is kept (give another output)")
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"{path}: cannot write here ({existing} is a file, not a folder)")
    try:
        probe = existing / f".{path.name}.{os.getpid()}.probe"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise OutputError(f"{path}: cannot write here ({e.strerror or e})") from None
    return path


_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # a write that failed for want of room


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path`, on any error it is removed and `path` kept.

    A crash or `kill -9` at any moment leaves either the previous file or the new one, never a half-written one.
    """
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """`atomic_path` for files that belong together (a model and its metadata): each is replaced only once all
    are written, one after the other (a crash between two renames leaves the new first file beside the old
    second). An OSError while writing one (a full disk) is an OutputError naming the file, not its temp."""
    paths = [Path(p) for p in paths]
    for path in paths:
        _replaceable(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    temps = [path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in paths]
    try:
        try:
            yield temps
        except OSError as e:
            named = [p for p, t in zip(paths, temps, strict=True) if e.filename in (str(t), t)]
            if not named and (e.filename is not None or e.errno not in _NO_ROOM):
                raise  # about another file (the writer's own scratch space, say): not ours to name
            written = ", ".join(map(str, named or paths))
            raise OutputError(f"{written}: could not be written ({e.strerror or e}); the previous file, if any, "
                              f"is kept") from e
        umask = os.umask(0)
        os.umask(umask)
        for tmp in temps:
            os.chmod(tmp, 0o666 & ~umask)  # as a plain open() would make it: some writers create their file 0600
        for tmp, path in zip(temps, paths, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def _replaceable(path: Path) -> None:
    """OutputError unless `path` is absent or a regular file: a folder, a device or a pipe is never replaced."""
    if path.is_dir():
        raise OutputError(f"{path}: a folder, not a file to write")
    if path.exists() and not path.is_file():
        raise OutputError(f"{path}: not a regular file (a device, pipe or socket), not replaced")


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
