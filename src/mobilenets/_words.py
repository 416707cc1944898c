"""Small helpers for the wording of messages."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def counted(n: int | None, noun: str) -> str:
    """'1 file', '3 files', '0 files': a count and its noun, plural unless the count is one."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def first_repeated(items: Iterable[T]) -> T | None:
    """The first item met a second time (to name it in a message), or None when every item differs."""
    seen: set[T] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None
