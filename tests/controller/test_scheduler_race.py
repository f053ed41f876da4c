"""Two ticks (two controllers, or a slow tick and the next) racing for the same due slot."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from camfleet.controller.commands import Commands
from camfleet.controller.desired import DesiredState
from camfleet.controller.metrics import Metrics
from camfleet.controller.scheduler import Scheduler

NOW = 1_000_000_000_000


def _scheduler(db: Any, published: list[str]) -> Scheduler:
    clock = lambda: NOW  # noqa: E731
    metrics = Metrics()
    commands = Commands(db, lambda topic, *a, **k: published.append(topic), metrics, clock_ms=clock)
    desired = DesiredState(db, lambda *a, **k: None, clock_ms=clock)
    return Scheduler(db, commands, desired, metrics, clock_ms=clock)


def test_racing_ticks_fire_a_slot_once_and_the_loser_returns_0(
    database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ticks have read the due slot before either claims it (a barrier holds them there).
    Catches a claim that is not a compare-and-set (the slot fires twice), and a loser that goes
    on to insert the slot's commands anyway (IntegrityError on the command id) or raises."""
    published: list[str] = []
    first, second = _scheduler(database, published), _scheduler(database, published)
    schedule = first.create("device", "cam-1", "interval", "600", start=str(NOW))
    both_read = threading.Barrier(2, timeout=30)
    fire = Scheduler._fire

    def fire_after_both_read(self: Scheduler, row: Any, now: int) -> int:
        both_read.wait()
        return fire(self, row, now)

    monkeypatch.setattr(Scheduler, "_fire", fire_after_both_read)
    results: dict[str, Any] = {}

    def tick(name: str, scheduler: Scheduler) -> None:
        try:
            results[name] = scheduler.tick()
        except Exception as exc:  # the assertion below names it
            results[name] = exc

    threads = [
        threading.Thread(target=tick, args=(name, s))
        for name, s in (("first", first), ("second", second))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results.values(), key=repr) == [0, 1], results
    after = first.get(schedule["id"])
    assert (after["fired"], after["missed"]) == (1, 0)
    with database.read() as tx:
        rows = tx.query("SELECT id FROM commands WHERE schedule_id = ?", (schedule["id"],))
    assert [r["id"] for r in rows] == [f"{schedule['id']}-{NOW}-cam-1"]
    assert len(published) == 1


def test_a_slot_that_fired_is_never_reopened_by_a_controller_whose_clock_is_behind(
    database: Any,
) -> None:
    """Re-enabling a schedule on a controller whose clock is 5 s behind the one that fired the
    slot must not make that slot due again. Catches ``set_enabled`` computing the next slot from
    its own clock alone: the slot is claimed again and its command id collides (IntegrityError
    on every tick, the schedule stuck)."""
    published: list[str] = []
    ahead = _scheduler(database, published)
    behind = _scheduler(database, published)
    behind.clock_ms = lambda: NOW - 5_000
    schedule = ahead.create("device", "cam-1", "interval", "600", start=str(NOW - 5_000))
    ahead.clock_ms = lambda: NOW + 600_000 - 5_000  # the second slot, fired by `ahead`
    assert ahead.tick() == 1
    fired_slot = ahead.get(schedule["id"])["last_slot_ms"]
    behind.set_enabled(schedule["id"], True)
    assert behind.get(schedule["id"])["next_slot_ms"] > fired_slot
    assert ahead.tick() == 0
    assert ahead.get(schedule["id"])["fired"] == 1


def test_a_disabled_schedule_does_not_fire_and_re_enabling_skips_what_passed(
    database: Any,
) -> None:
    """Catches ``set_enabled`` not storing its change (a disabled schedule still fires) and a
    re-enabled one firing the slots that passed while it was off."""
    published: list[str] = []
    scheduler = _scheduler(database, published)
    schedule = scheduler.create("device", "cam-1", "interval", "600", start=str(NOW + 600_000))
    assert scheduler.set_enabled(schedule["id"], False)["enabled"] is False
    scheduler.clock_ms = lambda: NOW + 3 * 600_000
    assert scheduler.tick() == 0
    enabled = scheduler.set_enabled(schedule["id"], True)
    assert enabled["enabled"] is True
    assert enabled["next_slot_ms"] == NOW + 4 * 600_000
    assert scheduler.tick() == 0 and published == []


def test_catching_up_fires_the_slot_that_is_due_exactly_now(database: Any) -> None:
    """Catches the walk over missed slots stopping before a slot equal to the tick's time
    (``>=`` for ``>``): that slot would be neither fired nor counted as missed."""
    published: list[str] = []
    scheduler = _scheduler(database, published)
    schedule = scheduler.create("device", "cam-1", "interval", "600", start=str(NOW))
    assert scheduler.tick() == 1
    scheduler.clock_ms = lambda: NOW + 3 * 600_000  # two slots missed, the third due right now
    assert scheduler.tick() == 1
    after = scheduler.get(schedule["id"])
    assert (after["last_slot_ms"], after["fired"], after["missed"]) == (NOW + 3 * 600_000, 2, 2)
    assert after["next_slot_ms"] == NOW + 4 * 600_000


def test_a_slot_exactly_misfire_grace_old_still_fires(database: Any) -> None:
    """Catches the grace compared with ``<`` (the documented policy is "at most" grace old)."""
    published: list[str] = []
    scheduler = _scheduler(database, published)  # misfire grace: 300 s
    schedule = scheduler.create("device", "cam-1", "interval", "600", start=str(NOW))
    scheduler.clock_ms = lambda: NOW + 300_000
    assert scheduler.tick() == 1
    assert scheduler.get(schedule["id"])["last_slot_ms"] == NOW
