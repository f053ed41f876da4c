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
