"""Atomic file writes: a temp file in the same folder, renamed over the target only once complete."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot be written; the message is one line naming it."""


def writable(path: str | Path, *, folder: bool = False) -> Path:
    """`path` (a file, or with `folder` a folder) checked writable before the work that produces it, creating
    nothing: a probe file is written and removed in its nearest existing folder (the writers make the rest).
    OutputError names the path and the reason."""
    path = Path(path)
    directory = path if folder else path.parent
    if not folder and path.is_dir():
        raise OutputError(f"{path}: a folder, not a file to write")
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


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path`, on any error it is removed and `path` kept.

    A crash or `kill -9` at any moment leaves either the previous file or the new one, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a plain open() would make it: some writers create their file 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
