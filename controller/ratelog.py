"""Logging of repeating failures without flooding the log."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """Log a repeating failure at most once per ``interval_s`` per key, with how many were held
    back (a full disk would otherwise write a traceback per failed job)."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._log = logger
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, level: int, msg: str, *args: object, exc: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            msg += f" ({held} similar messages held back in the last {self._interval:.0f} s)"
        self._log.log(level, msg, *args, exc_info=exc)
