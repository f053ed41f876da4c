"""Lazy import of a camera's vendor library, with a clear error naming what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from camfleet.errors import UserError


def require(module: str, install: str) -> ModuleType:
    """Import ``module`` or raise UserError saying which package provides it.

    ``install`` is the advice, e.g. ``pip install 'camfleet[pi]'`` or an apt command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"camera library {module!r} is not installed ({exc}): {install}") from None
