"""The whole controller on PostgreSQL: ingest with dedup, commands, schedules, retention, API
queries run unchanged (the SQL is shared; only the adapter differs)."""

from __future__ import annotations

from pathlib import Path

from camfleet.controller.config import RetentionPolicy
from camfleet.testing.controller_process import Waiter
from camfleet.testing.sim_device import unique_id

from .pg import fresh_database


def test_controller_on_postgres(controllers, devices, postgres_server_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database(postgres_server_url, unique_id("ctl").replace("-", "_"))
    ctl = controllers(database=url, retention_default=RetentionPolicy(max_count=5))
    assert ctl.db.dialect == "postgresql"
    waiter = Waiter(ctl)
    dev = devices("pg")
    frames = dev.send_frames(8, size=3000)
    dev.publish_frame(frames[0])  # a redelivery: stored once
    assert dev.wait_receipted(timeout=20)

    def count() -> int:
        with ctl.db.read() as tx:
            return int(
                tx.scalar(
                    "SELECT COUNT(*) FROM frames WHERE device_id = ?",
                    (dev.device_id,),
                )
            )

    assert waiter.wait_for(lambda: count() == 8, 10)
    assert ctl.metrics.total("frames_duplicate_total") >= 1
    cmd = ctl.commands.create("capture", {"count": 1}, device_id=dev.device_id)[0]

    def status() -> str:
        with ctl.db.read() as tx:
            return str(ctl.commands.get_row(tx, cmd["id"])["status"])

    assert waiter.wait_for(lambda: status() == "done", 15)
    sched = ctl.scheduler.create("device", dev.device_id, "interval", "3600")
    assert waiter.wait_for(lambda: ctl.scheduler.get(sched["id"])["fired"] == 1, 10)
    assert waiter.wait_for(lambda: count() == 10, 10)  # + the command's and the slot's frames
    assert ctl.retention.run() == {"count": 5}
    assert count() == 5
