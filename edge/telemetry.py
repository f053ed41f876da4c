"""Health readings of a Linux board, as a Telemetry message.

Everything is read from /proc, /sys and statvfs (no psutil: light on a Pi Zero). A reading the
board does not have (no thermal zone in a container) stays absent, as the contract says.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from camfleet.proto.v1 import common_pb2, telemetry_pb2

THERMAL_ROOT = Path("/sys/class/thermal")


def cpu_temperature_c(root: Path = THERMAL_ROOT) -> float | None:
    """A CPU-like thermal zone in degrees C (Pi: cpu-thermal, MaixCAM: soc, PC: x86_pkg_temp),
    else the first readable zone, else None (containers have none)."""
    readings: list[tuple[bool, float]] = []
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip().lower()
            value = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        cpu = any(word in kind for word in ("cpu", "soc", "x86_pkg", "core"))
        readings.append((cpu, value / 1000.0))
    for cpu, celsius in readings:
        if cpu:
            return celsius
    return readings[0][1] if readings else None


def mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def system_uptime_ms() -> int:
    """Milliseconds since the machine booted: what every ``uptime_ms`` the agent sends means
    (Telemetry, Frame, Event; see proto/camfleet/v1/frame.proto). CLOCK_BOOTTIME is the clock of
    /proc/uptime, read without opening a file per frame."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is None:  # not Linux: the closest clock there is
        return int(time.monotonic() * 1000)
    return int(time.clock_gettime(clock) * 1000)


def read(
    *, session: int, spool_dir: Path, spool_depth: int, spool_bytes: int, camera_status: str
) -> telemetry_pb2.Telemetry:
    t = telemetry_pb2.Telemetry(
        timestamp_ms=int(time.time() * 1000),
        session=session,
        uptime_ms=system_uptime_ms(),
        wake_cause=common_pb2.WAKE_CAUSE_ALWAYS_ON,
        spool_depth=spool_depth,
        spool_bytes=spool_bytes,
        camera_status=camera_status,
    )
    temp = cpu_temperature_c()
    if temp is not None:
        t.temperature_c = temp
    try:
        t.cpu_load = os.getloadavg()[0]
    except OSError:
        pass
    mem = mem_available()
    if mem is not None:
        t.mem_free = mem
    try:
        t.disk_free = shutil.disk_usage(spool_dir).free
    except OSError:
        pass
    return t
