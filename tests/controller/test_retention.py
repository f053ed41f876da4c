"""Retention by age, count and disk budget; a file that is not indexed is never deleted."""

from __future__ import annotations

import time
from pathlib import Path

from camfleet.controller.config import RetentionPolicy
from camfleet.testing.controller_process import Waiter, frame_rows


def test_retention_by_age_count_budget_spares_unindexed(
    controllers, devices, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    ctl = controllers(
        retention_interval_s=3600,
        retention_default=RetentionPolicy(max_age_days=5),
        retention_groups={"g": RetentionPolicy(max_count=4)},
    )
    waiter = Waiter(ctl)
    old = int((time.time() - 10 * 86400) * 1000)
    a = devices("reta")
    b = devices("retb", groups=("g",))
    a.send_frames(3, size=1000, captured_at_ms=old)
    a.send_frames(7, size=1000)
    b.send_frames(6, size=1000)
    assert a.wait_receipted(timeout=20) and b.wait_receipted(timeout=20)
    assert waiter.wait_for(lambda: len(frame_rows(data)) == 16)
    assert ctl.store.flush(30)  # the browsable files are written behind the frame log
    # A file the writer has put down but not yet indexed (crash window): never a victim.
    unindexed = data / "frames" / a.device_id / "2000-01-01" / "000000_9-9.jpg"
    unindexed.parent.mkdir(parents=True)
    unindexed.write_bytes(b"\xff\xd8not yet indexed\xff\xd9")

    assert ctl.retention.run() == {"age": 3, "count": 2}
    rows_a = frame_rows(data, a.device_id)
    rows_b = frame_rows(data, b.device_id)
    assert sorted(r["seq"] for r in rows_a) == list(range(4, 11))
    assert sorted(r["seq"] for r in rows_b) == [3, 4, 5, 6]
    on_disk = {p.relative_to(data).as_posix() for p in (data / "frames").rglob("*.jpg")}
    assert on_disk == {r["store_key"] for r in rows_a + rows_b} | {
        unindexed.relative_to(data).as_posix()
    }

    # Disk budget for the whole store: the oldest frames of the fleet go first.
    total = sum(r["size"] for r in rows_a + rows_b)
    ctl.config.disk_budget_bytes = total - 2500
    assert ctl.retention.run() == {"disk_budget": 3}
    assert unindexed.exists()
    assert ctl.metrics.get("retention_deleted_total", reason="age") == 3


def test_finished_commands_are_bounded_by_count_and_age_pending_ones_are_kept(
    controllers, devices
) -> None:  # type: ignore[no-untyped-def]
    ctl = controllers(retention_interval_s=3600, command_history=3, command_history_days=10)
    now = int(time.time() * 1000)
    clock = iter(range(now, now + 1000))  # distinct creation times, in creation order
    ctl.commands.clock_ms = lambda: next(clock)
    acker = devices("cmdret-a")  # acks every command: they end "done"
    silent = devices("cmdret-b", auto_ack=False)  # never acks: they stay pending ("sent")
    done = [ctl.commands.create("reannounce", device_id=acker.device_id)[0]["id"] for _ in range(5)]
    pending = [
        ctl.commands.create("reannounce", device_id=silent.device_id)[0]["id"] for _ in range(5)
    ]
    waiter = Waiter(ctl)

    def statuses() -> dict[str, str]:
        with ctl.db.read() as tx:
            return {r["id"]: r["status"] for r in tx.query("SELECT id, status FROM commands")}

    assert waiter.wait_for(
        lambda: (
            [statuses().get(i) for i in done] == ["done"] * 5
            and [statuses().get(i) for i in pending] == ["sent"] * 5
        ),
        20,
    )
    # Count: the device's newest 3 stay; of the older ones only the finished go.
    assert ctl.retention.trim_commands() == 2
    assert set(statuses()) == set(done[2:]) | set(pending)
    # Age: 11 days later every finished command is gone, the pending ones are still there.
    ctl.retention.clock_ms = lambda: now + 11 * 86400 * 1000
    assert ctl.retention.trim_commands() == 3
    assert set(statuses()) == set(pending)
    assert ctl.metrics.get("commands_deleted_total") == 5
