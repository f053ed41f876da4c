"""Registry rules: births and wills ordered by session; derived device states (SQLite and
PostgreSQL)."""

from __future__ import annotations

from camfleet.controller import registry
from camfleet.controller.storage.migrations import MIGRATIONS, migrate
from camfleet.proto.v1 import state_pb2


def test_stale_will_is_ignored_and_states_derive(database) -> None:  # type: ignore[no-untyped-def]
    db = database
    assert migrate(db) == len(MIGRATIONS)  # idempotent (the fixture migrated already)
    online = state_pb2.DeviceState(presence=state_pb2.PRESENCE_ONLINE, session=7, platform="x")
    old_will = state_pb2.DeviceState(presence=state_pb2.PRESENCE_OFFLINE, session=6)
    with db.transaction() as tx:
        assert registry.apply_state(tx, "cam", online, 1000) == "new"
        assert registry.apply_state(tx, "cam", old_will, 2000) == "stale"
        row = tx.one("SELECT * FROM devices WHERE device_id = 'cam'")
    assert row is not None and row["presence"] == "online" and row["session"] == 7
    assert registry.derive_state(row, 3000, 60_000, 60_000) == "online"
    asleep = state_pb2.DeviceState(
        presence=state_pb2.PRESENCE_ASLEEP, session=7, next_wake_ms=10_000
    )
    with db.transaction() as tx:
        assert registry.apply_state(tx, "cam", asleep, 4000) == "applied"
        row = tx.one("SELECT * FROM devices WHERE device_id = 'cam'")
    assert row is not None
    assert registry.derive_state(row, 5000, 60_000, 60_000) == "asleep"
    assert registry.derive_state(row, 10_000 + 60_001, 60_000, 60_000) == "overdue"
    same_will = state_pb2.DeviceState(presence=state_pb2.PRESENCE_OFFLINE, session=7)
    with db.transaction() as tx:
        registry.apply_state(tx, "cam", same_will, 6000)
        row = tx.one("SELECT * FROM devices WHERE device_id = 'cam'")
    assert row is not None and registry.derive_state(row, 6000, 60_000, 60_000) == "offline"


def test_an_enrolled_device_is_listed_until_its_first_birth_counts_as_new(database) -> None:  # type: ignore[no-untyped-def]
    db = database
    with db.transaction() as tx:
        registry.enrol(tx, "gate", ("yard",), "usb")
        row = tx.one("SELECT * FROM devices WHERE device_id = 'gate'")
        assert row is not None and registry.derive_state(row, 10**13, 60_000, 60_000) == "enrolled"
        assert registry.groups_of(tx, "gate") == ["yard"]
        birth = state_pb2.DeviceState(presence=state_pb2.PRESENCE_ONLINE, session=3)
        assert registry.apply_state(tx, "gate", birth, 5000) == "new"
        row = tx.one("SELECT * FROM devices WHERE device_id = 'gate'")
        assert row is not None and row["first_seen_ms"] == row["last_seen_ms"] == 5000
        assert registry.derive_state(row, 6000, 60_000, 60_000) == "online"
        # enrolled again (new credentials): its history stays
        registry.enrol(tx, "gate", ("porch",), "usb")
        row = tx.one("SELECT * FROM devices WHERE device_id = 'gate'")
        assert row is not None and row["first_seen_ms"] == 5000 and row["session"] == 3
        assert registry.groups_of(tx, "gate") == ["porch", "yard"]


def test_telemetry_and_event_history_stay_bounded_and_keep_the_newest(database) -> None:  # type: ignore[no-untyped-def]
    from camfleet.proto.v1 import telemetry_pb2

    keep = 5
    online = state_pb2.DeviceState(presence=state_pb2.PRESENCE_ONLINE, session=1)
    telemetry = registry.History("telemetry", keep)
    events = registry.History("events", keep)
    with database.transaction() as tx:
        registry.apply_state(tx, "cam", online, 1)
        for i in range(1, 31):
            registry.add_telemetry(
                tx, "cam", telemetry_pb2.Telemetry(uptime_ms=i), 100 + i, telemetry
            )
            registry.add_event(tx, "cam", telemetry_pb2.Event(type=f"e{i}"), 100 + i, events)
        registry.add_telemetry(tx, "other", telemetry_pb2.Telemetry(uptime_ms=1), 500, telemetry)
        counts = {
            table: tx.scalar(f"SELECT COUNT(*) FROM {table} WHERE device_id = 'cam'")
            for table in ("telemetry", "events")
        }
        newest_event = tx.scalar("SELECT MAX(received_ms) FROM events WHERE device_id = 'cam'")
        oldest_event = tx.scalar("SELECT MIN(received_ms) FROM events WHERE device_id = 'cam'")
        others = tx.scalar("SELECT COUNT(*) FROM telemetry WHERE device_id = 'other'")
    # Trimmed now and then (every keep // 8 inserts): never fewer than `keep`, never many more.
    assert all(keep <= n <= 2 * keep for n in counts.values()), counts
    assert newest_event == 130 and oldest_event > 100 + 30 - 2 * keep
    assert others == 1  # one device's trim leaves the others alone
