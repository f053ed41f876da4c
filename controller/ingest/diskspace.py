"""Low-space watermarks of the data directory.

Under ``low_bytes`` free the writer stops storing frames: each is acknowledged to the broker
WITHOUT a receipt, so the device keeps it in its spool and sends it again (an unacknowledged
delivery would instead sit in the broker's in-flight window, and a full window stops every
device's messages, states and acks included). States, telemetry, events and acks are small rows
and keep being recorded. From ``resume_bytes`` free (above ``low_bytes``, so the state does not
flap) frames are accepted again by themselves.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("camfleet.controller.disk")


class DiskGuard:
    def __init__(
        self,
        path: Path,
        low_bytes: int,
        resume_bytes: int,
        statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
        min_interval_s: float = 0.25,
    ) -> None:
        self.path = path
        self.low_bytes = low_bytes
        self.resume_bytes = max(resume_bytes, low_bytes)
        self._statvfs = statvfs
        self._min_interval = min_interval_s
        self._lock = threading.Lock()
        self._checked = 0.0
        self.low = False
        self.free_bytes = -1
        #: Called with the new state (True = low) when it changes.
        self.on_change: list[Callable[[bool], None]] = []

    @property
    def reason(self) -> str:
        if not self.low:
            return ""
        return (
            f"disk space low: {self.free_bytes} bytes free in {self.path} (frames refused "
            f"below {self.low_bytes}, accepted again from {self.resume_bytes})"
        )

    def check(self, force: bool = False) -> bool:
        """Read the free space (at most every ``min_interval_s`` unless forced); True if low."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._checked < self._min_interval:
                return self.low
            self._checked = now
            try:
                st = self._statvfs(self.path)
                free = st.f_bavail * st.f_frsize
            except OSError:
                return self.low
            self.free_bytes = free
            was = self.low
            if was:
                self.low = free < self.resume_bytes
            else:
                self.low = free < self.low_bytes
            changed = was != self.low
        if changed:
            if self.low:
                log.error("%s", self.reason)
            else:
                log.warning("disk space back (%d bytes free): accepting frames again", free)
            for hook in self.on_change:
                try:
                    hook(self.low)
                except Exception:
                    log.exception("disk state hook failed")
        return self.low

    def out_of_space(self) -> None:
        """A write failed with ENOSPC/EDQUOT: the filesystem is full whatever statvfs said."""
        with self._lock:
            self._checked = 0.0
        if not self.check(force=True):
            with self._lock:
                self.low = True
            log.error("disk full writing to %s: frames refused until space returns", self.path)
            for hook in self.on_change:
                try:
                    hook(True)
                except Exception:
                    log.exception("disk state hook failed")


def is_out_of_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
