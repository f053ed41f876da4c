"""The chip's clock on the host port (host port only, MicroPython).

The node measures its wake budgets with ``time.ticks_ms()``. On the host, flash writes are
instant while a real ESP32's are not (a 4 KiB sector erase takes tens of milliseconds), so a
budget that is spent by flash work on a board would never run out here. This module is the real
``time`` plus the chip time the simulated hardware spent: host modules call ``spend_ms()`` for
work that the chip does slowly, and the node sees that time pass, deterministically, whatever
the host's load. Wall-clock functions (``time()``, ``localtime()``) are left alone.
"""

import utime
from utime import (  # noqa: F401 (re-exported: this module stands in for the built-in)
    gmtime,
    localtime,
    mktime,
    sleep,
    sleep_ms,
    sleep_us,
    ticks_add,
    ticks_cpu,
    ticks_diff,
    time,
    time_ns,
)

_spent_ms = 0


def spend_ms(ms):
    """Let ``ms`` of chip time pass (work the hardware does slowly and the host does at once)."""
    global _spent_ms
    _spent_ms += ms


def ticks_ms():
    return utime.ticks_add(utime.ticks_ms(), _spent_ms)


def ticks_us():
    return utime.ticks_add(utime.ticks_us(), _spent_ms * 1000)
