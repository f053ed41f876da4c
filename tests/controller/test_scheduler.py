"""Schedules fire once per slot, across a kill -9 of the controller; missed-slot policy."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from camfleet.controller.commands import Commands
from camfleet.controller.desired import DesiredState
from camfleet.controller.metrics import Metrics
from camfleet.controller.scheduler import Scheduler
from camfleet.errors import UserError
from camfleet.mosquitto import Mosquitto, free_port
from camfleet.testing.controller_process import ControllerProcess, Waiter
from camfleet.testing.sim_device import SimDevice, unique_id


def _slots(dev: SimDevice, schedule_id: str) -> list[int]:
    return [
        int(c.command.capture.metadata["slot_ms"])
        for c in dev.commands
        if c.command.capture.metadata.get("schedule_id") == schedule_id
    ]


def test_schedule_fires_once_per_slot_across_kill_9(mosquitto: Mosquitto, tmp_path: Path) -> None:
    port = free_port()
    ctl = ControllerProcess(
        mosquitto.host,
        mosquitto.port,
        tmp_path / "data",
        "--http",
        f"127.0.0.1:{port}",
        "--token",
        "tok",
        CAMFLEET_TICK_S="0.2",
        CAMFLEET_MISFIRE_GRACE_S="30",
    )
    ctl.start()
    dev = SimDevice(mosquitto.host, mosquitto.port, unique_id("sched")).connect()
    try:
        resp = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/schedules",
            json={
                "target_kind": "device",
                "target": dev.device_id,
                "kind": "interval",
                "spec": "1",
            },
            headers={"Authorization": "Bearer tok"},
        )
        assert resp.status_code == 201, resp.text
        sid = resp.json()["id"]
        assert dev.wait_until(lambda: len(_slots(dev, sid)) >= 3, 60)
        ctl.kill9()
        before = len(_slots(dev, sid))
        ctl.start()
        assert dev.wait_until(lambda: len(_slots(dev, sid)) >= before + 3, 60)
        schedule = httpx.get(f"http://127.0.0.1:{port}/api/v1/schedules/{sid}").json()
        ctl.stop()
        slots = _slots(dev, sid)
        assert len(slots) == len(set(slots)), f"a slot fired twice: {sorted(slots)}"
        first = schedule["start_ms"]
        assert all((s - first) % 1000 == 0 for s in slots)
        # Every slot from the first to the last one fired is accounted for exactly once:
        # fired (the device got it) or missed (policy), never both, never twice.
        last = schedule["last_slot_ms"]
        span = (last - min(slots)) // 1000 + 1
        assert schedule["fired"] + schedule["missed"] == span
        assert schedule["fired"] >= len(slots)
    finally:
        ctl.stop()
        dev.disconnect()


class FakeClock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_missed_slot_policy(database) -> None:  # type: ignore[no-untyped-def]
    db = database
    published: list[str] = []
    clock = FakeClock(1_000_000_000_000)
    metrics = Metrics()
    commands = Commands(db, lambda topic, *a, **k: published.append(topic), metrics, clock_ms=clock)
    desired = DesiredState(db, lambda *a, **k: None, clock_ms=clock)
    scheduler = Scheduler(db, commands, desired, metrics, misfire_grace_s=120, clock_ms=clock)
    s = scheduler.create("device", "cam-1", "interval", "600", start=str(clock.now))
    assert scheduler.tick() == 1  # the slot at start
    assert scheduler.tick() == 0  # same slot: never twice
    clock.now += 10 * 600_000 + 5_000  # down for 10 slots: only the latest (5 s old) fires
    assert scheduler.tick() == 1
    after = scheduler.get(s["id"])
    assert (after["fired"], after["missed"]) == (2, 9)
    assert after["next_slot_ms"] > clock.now
    clock.now += 10 * 600_000 - 5_000 + 300_000  # latest due slot is 300 s old > grace: skip
    assert scheduler.tick() == 0
    assert scheduler.get(s["id"])["missed"] == 9 + 10
    assert len(published) == 2
    once = scheduler.create("device", "cam-1", "once", str(clock.now + 1000))
    clock.now += 1000
    assert scheduler.tick() == 1
    clock.now += 60_000
    assert scheduler.tick() == 0
    assert scheduler.get(once["id"])["next_slot_ms"] is None
    # A one-shot whose time passed while the request travelled (5 s) still fires, once; one
    # older than the grace is refused instead of stored to never fire (it was stored silently).
    late = scheduler.create("device", "cam-1", "once", str(clock.now - 5_000))
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0
    assert scheduler.get(late["id"])["fired"] == 1
    with pytest.raises(UserError, match="in the past"):
        scheduler.create("device", "cam-1", "once", str(clock.now - 121_000))


def test_sleeping_group_gets_schedule_compiled_into_desired(controllers, devices) -> None:  # type: ignore[no-untyped-def]
    ctl = controllers()
    waiter = Waiter(ctl)
    node = devices("nap", capabilities=("jpeg", "deep_sleep"), groups=("yard",))
    assert waiter.wait_for(
        lambda: ctl.desired.effective is not None and _registered(ctl, node.device_id)
    )
    ctl.scheduler.create("group", "yard", "cron", "0 6,18 * * *", capture_count=2)
    ctl.scheduler.create("group", "yard", "interval", "900")
    assert node.wait_until(
        lambda: bool(node.desired) and node.desired[-1].config.schedule.interval_s == 900, 60
    )
    sched = node.desired[-1].config.schedule
    assert list(sched.daily_times_s) == [6 * 3600, 18 * 3600]
    assert sched.interval_s == 900 and sched.burst_count == 2
    ctl.scheduler.tick()  # the interval's first slot is due now: sleepers get no command
    with ctl.db.read() as tx:
        assert ctl.commands.list_rows(tx, node.device_id) == []
    # A one-shot cannot be compiled: the sleeper gets a command that waits for its next wake.
    once = ctl.scheduler.create("group", "yard", "once", str(int(time.time() * 1000)))
    ctl.scheduler.tick()
    with ctl.db.read() as tx:
        rows = ctl.commands.list_rows(tx, node.device_id)
    assert [r["schedule_id"] for r in rows] == [once["id"]]


def _registered(ctl, device_id: str) -> bool:  # type: ignore[no-untyped-def]
    with ctl.db.read() as tx:
        return tx.one("SELECT 1 FROM device_groups WHERE device_id = ?", (device_id,)) is not None
