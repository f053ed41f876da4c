"""Crash-safe file writes: the file holds the old content or the new, never a mix.

The one home of these steps for the edge agent's spool and state, the controller's frame log and
store, and the CLI's saved token.
"""

from __future__ import annotations

import os
from pathlib import Path

TMP_PREFIX = ".tmp-"


def atomic_write(path: Path, data: bytes, fsync: bool = True, mode: int = 0o644) -> None:
    """Write a temp file next to ``path``, fsync it, rename it over ``path``, fsync the dir.

    ``mode`` applies from the temp file's creation on: a secret is never readable by others.
    """
    tmp = path.with_name(TMP_PREFIX + path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if fsync:
        sync_dir(path.parent)


def sync_dir(directory: Path) -> None:
    """fsync a directory so a rename or unlink in it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
