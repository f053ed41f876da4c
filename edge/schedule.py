"""The local capture schedule: every N seconds or a 5-field UTC cron expression.

Boards capture on their own clock so they keep working while the controller (or the broker) is
away; frames wait in the spool. Only the timing lives here; the agent's scheduler thread asks
:meth:`Schedule.next_due` and waits on an Event, so a test can compress time by using a short
interval instead of waiting real minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def check_cron(expr: str) -> None:
    """Raise ValueError with a one-line reason when ``expr`` is not a valid 5-field cron."""
    from croniter import croniter

    if len(expr.split()) != 5:
        raise ValueError(f"cron {expr!r} must have 5 fields (minute hour day month weekday)")
    if not croniter.is_valid(expr):
        raise ValueError(f"cron {expr!r} is not a valid cron expression")


@dataclass(frozen=True)
class Schedule:
    """When to capture: ``interval_s`` > 0, or ``cron``; neither = no local schedule."""

    interval_s: float = 0.0
    cron: str = ""
    burst_count: int = 1
    burst_interval_ms: int = 0
    daily_times_s: tuple[int, ...] = ()  # seconds after UTC midnight

    @property
    def active(self) -> bool:
        return self.interval_s > 0 or bool(self.cron) or bool(self.daily_times_s)

    def next_due(self, previous_due: float | None, now: float) -> float | None:
        """The next capture time after ``previous_due`` (or from ``now`` on the first call).

        Interval slots are anchored on the previous slot so they do not drift; when the agent
        fell behind by more than a slot, missed slots are skipped rather than captured in a rush.
        """
        if self.interval_s > 0:
            if previous_due is None:
                return now
            due = previous_due + self.interval_s
            if due < now - self.interval_s:
                skipped = math.floor((now - due) / self.interval_s)
                due += skipped * self.interval_s
            return due
        if self.cron:
            from datetime import UTC, datetime

            from croniter import croniter

            start = max(now, previous_due or now)
            it = croniter(self.cron, datetime.fromtimestamp(start, UTC))
            return float(it.get_next(float))
        if self.daily_times_s:
            # The first slot at or after now (after the previous one): missed slots are skipped.
            threshold = now if previous_due is None else max(previous_due + 1e-6, now)
            midnight = math.floor(threshold / 86400) * 86400
            slots = (midnight + day * 86400 + t for day in (0, 1) for t in self.daily_times_s)
            return float(min(t for t in slots if t >= threshold))
        return None
