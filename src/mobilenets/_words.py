"""Wording shared by messages."""

from __future__ import annotations


def counted(n: int | None, noun: str) -> str:
    """'1 file', '3 files', '0 files': a count and its noun, plural unless the count is one."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
