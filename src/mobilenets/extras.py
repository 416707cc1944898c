"""The optional dependencies (pyproject's extras): a missing one is a one-line error saying what installs it."""

from __future__ import annotations

import importlib


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, purpose: str) -> None:
    """Import `module`, or raise MissingExtra: `purpose` needs pip install 'mobilenets[extra]'."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{purpose} needs {module}: pip install 'mobilenets[{extra}]'") from None
