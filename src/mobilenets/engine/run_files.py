"""A run's files beside its checkpoints: train.log, metrics.csv rewritten after each epoch and curves.png redrawn
every half minute."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None

from .._atomic import writable, write_text
from ..plots import plot_curves


class RunFolderError(ValueError):
    """The run folder cannot be used: it is a file, or another run is writing to it (bad input: exit status 2)."""


RUN_FILES = ("last.pt", "best.safetensors", "metrics.csv", "summary.json")  # what says a folder holds a run
# a config.yaml there may be a user's recipe kept beside its runs: a new run does not write over it either
OCCUPIED_BY = (*RUN_FILES, "config.yaml")


def run_folder(out: Path, *, reuse: bool) -> Path:
    """`out` unless it holds another run's results or a config.yaml (and `reuse`, for resume or exist_ok, is off);
    then the first of `out2`, `out3`, ... that does not: a run never replaces another's files, nor a recipe."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"output: {out} is a file, not a folder")
    n, folder = 1, out
    while not reuse and any((folder / name).exists() for name in OCCUPIED_BY):
        n += 1
        folder = out.with_name(f"{out.name}{n}")
    return folder


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold `folder/.lock` while a run writes there: a second run on the same folder fails naming the first."""
    try:
        writable(folder, folder=True)
    except ValueError as e:
        raise RunFolderError(f"output: {e}") from None
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as lock:
        if fcntl is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                raise RunFolderError(f"{folder}: another run ({holder}) is writing here; wait for it to end or "
                                     f"give another --output") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        for stale in folder.glob(".*.tmp"):  # half-written files of a killed run: no one else writes here now
            stale.unlink(missing_ok=True)
        yield


def discard_unfinished(folder: Path) -> None:
    """Remove what a run that failed before its first results wrote into `folder`, a folder it created: the lock,
    an early train.log and config.yaml, half-written files; then the folder itself, if nothing else is there."""
    if not folder.is_dir() or any((folder / name).exists() for name in RUN_FILES):
        return
    for path in (folder / ".lock", folder / "train.log", folder / "config.yaml", *folder.glob(".*.tmp")):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def start_logging(log: logging.Logger, out: Path, is_main: bool) -> logging.Handler | None:
    """Log to stderr, and on the main process also to `out/train.log`; returns the file handler to close."""
    log.setLevel(logging.INFO)
    if not log.handlers or all(isinstance(h, logging.FileHandler) for h in log.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(console)
    if not is_main:
        log.setLevel(logging.WARNING)
        return None
    out.mkdir(parents=True, exist_ok=True)
    # file names that are not UTF-8 (undecodable bytes kept as surrogates) are written escaped, not refused
    handler = logging.FileHandler(out / "train.log", encoding="utf-8", errors="backslashreplace")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


class MetricsFiles:
    """A run's metrics.csv, rewritten after every epoch, and curves.png (losses, and the validation `scores`
    against epoch), redrawn at most every `plot_every_s` seconds and at the end: a redraw takes about half a
    second, which dominated runs of many short epochs."""

    def __init__(self, out: Path, columns: Sequence[str], scores: Sequence[str], score_label: str, *,
                 plot_every_s: float = 30.0) -> None:
        self.out, self.columns, self.scores, self.score_label = out, list(columns), scores, score_label
        self.plot_every_s = plot_every_s
        self._plotted_at: float | None = None
        self._plotted_rows = 0

    def update(self, history: list[dict[str, float]]) -> None:
        """Rewrite metrics.csv; redraw curves.png if the last drawing is older than `plot_every_s`."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text(self.out / "metrics.csv", buffer.getvalue())
        if self._plotted_at is None or time.monotonic() - self._plotted_at >= self.plot_every_s:
            self._plot(history)

    def finish(self, history: list[dict[str, float]]) -> None:
        """Redraw curves.png if the last drawing misses epochs."""
        if history and self._plotted_rows != len(history):
            self._plot(history)

    def _plot(self, history: list[dict[str, float]]) -> None:
        plot_curves(history, self.out / "curves.png", scores=self.scores, score_label=self.score_label)
        self._plotted_at, self._plotted_rows = time.monotonic(), len(history)
