"""Counters and gauges with labels, exposed in the Prometheus text format (hand-written)."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """Thread-safe counters; gauges are callbacks read at scrape time."""

    def __init__(self, prefix: str = "camfleet_controller") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._help: dict[str, str] = {}
        self._gauges: dict[str, tuple[str, Callable[[], dict[Labels, float] | float]]] = {}

    def describe(self, name: str, help_text: str) -> None:
        self._help[name] = help_text

    def declare(self, name: str, help_text: str, series: list[dict[str, str]]) -> None:
        """Describe a counter and create its series at 0 (``[{}]`` for one without labels),
        so it is scraped before its first increment."""
        self._help[name] = help_text
        with self._lock:
            counter = self._counters[name]
            for labels in series:
                counter.setdefault(tuple(sorted(labels.items())), 0)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0) + amount

    def get(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        with self._lock:
            return self._counters.get(name, {}).get(key, 0)

    def total(self, name: str) -> float:
        with self._lock:
            return sum(self._counters.get(name, {}).values())

    def gauge(
        self, name: str, help_text: str, read: Callable[[], dict[Labels, float] | float]
    ) -> None:
        self._gauges[name] = (help_text, read)

    def snapshot(self) -> dict[str, dict[Labels, float]]:
        with self._lock:
            return {k: dict(v) for k, v in self._counters.items()}

    def exposition(self) -> str:
        lines: list[str] = []
        for name, series in sorted(self.snapshot().items()):
            full = f"{self.prefix}_{name}"
            lines.append(f"# HELP {full} {self._help.get(name, name)}")
            lines.append(f"# TYPE {full} counter")
            lines += [f"{full}{_labels(k)} {_num(v)}" for k, v in sorted(series.items())]
        for name, (help_text, read) in sorted(self._gauges.items()):
            full = f"{self.prefix}_{name}"
            try:
                value = read()
            except Exception:  # a gauge must never break the scrape
                continue
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} gauge")
            values = value if isinstance(value, dict) else {(): value}
            lines += [f"{full}{_labels(k)} {_num(v)}" for k, v in sorted(values.items())]
        return "\n".join(lines) + "\n"


def _labels(key: Labels) -> str:
    if not key:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def thread_cpu_seconds() -> dict[Labels, float]:
    """CPU seconds (user + system) consumed by each live thread of this process, by name.

    Read from /proc (Linux); threads with the same name prefix (a pool) are summed. Empty where
    /proc is missing. The bench uses it to say which thread the controller's CPU goes to.
    """
    import os

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[Labels, float] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = thread_label(thread.name)
        key = (("thread", name),)
        out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_label(name: str) -> str:
    """A thread's name without what differs between installs or runs: pool numbers, and the
    MQTT client id paho puts in its network thread's name (it carries the instance id, and a
    label value per install breaks every dashboard and alert written for another install)."""
    if name.startswith("paho-mqtt-client-"):
        return "paho-mqtt-client"
    return re.sub(r"[_-]\d+$", "", name)


class StageClock:
    """Wall and thread-CPU time of consecutive stages of one thread's work.

    ``lap("x")`` charges the time since the previous lap (or creation) to stage ``x`` in
    ``stage_seconds_total`` (wall) and ``stage_cpu_seconds_total`` (this thread's CPU). Meant
    for per-batch stages: two clock reads and two counter updates a lap.
    """

    def __init__(self, metrics: Metrics) -> None:
        import time

        self._metrics = metrics
        self._wall = time.perf_counter
        self._cpu = time.thread_time
        self._w, self._c = self._wall(), self._cpu()

    def lap(self, stage: str) -> None:
        w, c = self._wall(), self._cpu()
        self._metrics.inc("stage_seconds_total", w - self._w, stage=stage)
        self._metrics.inc("stage_cpu_seconds_total", c - self._c, stage=stage)
        self._w, self._c = w, c
