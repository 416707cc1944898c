"""Progress bars for long work: tqdm with rate and ETA, redrawn 10x a second on a terminal and every 30 s into a
log file or CI output, where each redraw is a line."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

REFRESH_SECONDS = 0.1 if sys.stderr.isatty() else 30.0
Item = TypeVar("Item")


def progress_bar(items: Iterable[Item], description: str, *, enabled: bool = True, unit: str = "batch",
                 **options: Any) -> tqdm:
    """A transient bar over `items` (gone when done), silent when not `enabled`."""
    return tqdm(items, desc=description, disable=not enabled, leave=False, unit=unit, dynamic_ncols=True,
                mininterval=REFRESH_SECONDS, **options)
