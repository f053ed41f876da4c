"""The command outbox at fleet scale: a group command is inserted and claimed in one go, answered
from what was committed, and its "sent" marks reach the registry as one writer job (SQLite and
PostgreSQL)."""

from __future__ import annotations

from typing import Any

from camfleet.controller import registry
from camfleet.controller.commands import Commands
from camfleet.controller.metrics import Metrics
from camfleet.controller.storage.database import Tx


def test_group_command_is_claimed_at_insert_and_its_sent_marks_are_one_writer_job(
    database: Any,
) -> None:
    db = database
    published: list[tuple[str, Any]] = []

    def publish(topic: str, payload: bytes, qos: int = 1, on_acked: Any = None) -> None:
        published.append((topic, on_acked))

    commands = Commands(db, publish, Metrics())
    jobs: list[Any] = []
    commands.write = jobs.append  # the writer's queue, applied by hand below
    members = ["cam-a", "cam-b", "cam-c"]
    with db.transaction() as tx:
        for device in members:
            registry.touch(tx, device, 1)
            registry.add_group(tx, device, "yard")

    answer = commands.create("capture", {}, group="yard")

    # The answer (built without reading the rows back) is what the registry holds.
    with db.read() as tx:
        rows = [commands.get_row(tx, item["id"]) for item in answer]
    assert answer == [commands.to_json(row) for row in rows if row is not None]
    assert [(a["device_id"], a["status"], a["attempts"]) for a in answer] == [
        (d, "queued", 1) for d in members
    ]
    # Published once each, and claimed: the outbox's flush does not publish them again.
    assert sorted(topic for topic, _ in published) == [f"camfleet/v1/{d}/cmd" for d in members]
    assert commands.flush() == 0 and len(published) == 3

    for _, on_acked in published:  # the broker's PUBACKs
        on_acked()
    assert len(jobs) == 1  # one job for the three marks, not one each
    with db.transaction() as tx:
        jobs[0](tx)

    def statuses(tx: Tx) -> list[str]:
        return [str(commands.get_row(tx, a["id"])["status"]) for a in answer]  # type: ignore[index]

    with db.read() as tx:
        assert statuses(tx) == ["sent"] * 3
    # A later PUBACK starts a new job.
    on_acked = published[0][1]
    on_acked()
    assert len(jobs) == 2


def test_signing_keys_of_a_fan_out_are_read_in_one_query(database: Any) -> None:
    from camfleet.controller.device_keys import DeviceKeys

    db = database
    keys = DeviceKeys(db, cache_s=1.0)
    key_a = bytes(range(32))
    keys.put("cam-a", key_a)
    reads: list[int] = []
    real_read = db.read

    def counted_read() -> Any:
        reads.append(1)
        return real_read()

    db.read = counted_read
    try:
        with keys.batch(["cam-a", "cam-b", "cam-a"]):
            assert [keys.get("cam-a"), keys.get("cam-b"), keys.get("cam-b")] == [key_a, None, None]
        assert len(reads) == 1
        # Outside the block an absent key is read again (a device enrolled meanwhile is
        # signed for at once).
        key_b = bytes(range(1, 33))
        keys.put("cam-b", key_b)
        assert keys.get("cam-b") == key_b
    finally:
        db.read = real_read
