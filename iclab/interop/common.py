"""What the interop modules share: their error, and the optional packages of the `[hf]` extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from iclab.errors import IclabError


class InteropError(IclabError, ValueError):
    """A file or directory that cannot be exported or imported; one line naming it and the problem."""


def require(name: str) -> ModuleType:
    """Import an optional package of the [hf] extra, or fail with one line saying how to get it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise InteropError(f"this needs the {name} package: pip install 'iclab[hf]'") from None
