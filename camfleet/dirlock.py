"""One process per directory: an exclusive flock on a file in it, naming its holder.

The broker (``mosquitto.lock``), the controller (``controller.lock``), the edge agent (its state
dir's ``lock``) and the demo (``demo.lock``) each claim their directory with :func:`lock_file`
before writing anything in it, so a second instance pointed at the same directory is refused
with the first one's pid instead of rewriting or wiping its files. An flock is released by the
kernel when the last descriptor closes, so a crashed holder never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    """Another live process holds the lock; ``holder`` is what it wrote there ("pid N ...")."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def lock_file(path: Path, holder: str) -> int:
    """Take the flock on ``path`` (created, with its directory) and write ``holder`` into it.

    Returns the descriptor: closing it (or the process ending) releases the lock; a child given
    it (``pass_fds``) holds the lock too. Raises :class:`LockHeld` naming the current holder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held = os.read(fd, 200).decode(errors="replace").strip() or "pid unknown"
        os.close(fd)
        raise LockHeld(held) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{holder}\n".encode())
    return fd
