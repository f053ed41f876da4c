"""A long-running controller holds no resource per event: births (one per device wake) leave
neither a database connection nor a thread nor a file descriptor behind.

Catches the leak of issue 15: a registry connection opened per thread and kept until the
controller stopped, with a thread per birth, cost two fds and ~166 KB per wake.
"""

from __future__ import annotations

import os
import threading

from camfleet.controller.storage.database import Database
from camfleet.proto import topics
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import state_pb2
from camfleet.testing.controller_process import Waiter


def _fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # closed between listdir and readlink
            pass
    return out


def test_births_leave_no_connection_thread_or_fd_behind(controllers, devices) -> None:  # type: ignore[no-untyped-def]
    ctl = controllers()
    waiter = Waiter(ctl)
    dev = devices("births")
    topic = topics.device_topic(dev.device_id, Kind.STATE)

    def births(n: int) -> tuple[int, int]:
        """Publish ``n`` births (each a wake); return (fds, threads) once all are handled."""
        for _ in range(n):
            dev.session += 1
            dev.client.publish(topic, dev._state(state_pb2.PRESENCE_ONLINE), qos=1, retain=True)
        last = dev.session

        def settled() -> bool:
            with ctl.db.read() as tx:
                done = tx.scalar(
                    "SELECT session FROM devices WHERE device_id = ?", (dev.device_id,)
                )
            # The work a birth starts has finished once the thread count is back down.
            return done == last and threading.active_count() <= threads_before

        assert waiter.wait_for(settled, 120), (threading.active_count(), threads_before)
        return len(_fds()), threading.active_count()

    threads_before = threading.active_count()
    fds_50, threads_50 = births(50)
    fds_500, threads_500 = births(450)
    assert threads_500 == threads_50
    # The pool may have opened a few more connections for more concurrent work (3 fds each:
    # database, WAL, shared memory), never more than its bound; a per-birth leak is ~900 fds.
    pool_fds = 3 * Database.max_connections
    assert fds_500 - fds_50 <= pool_fds, (fds_50, fds_500)
    registry = [p for p in _fds() if "registry.sqlite3" in p]
    assert len(registry) <= pool_fds, registry
    assert ctl.db.open_connections() <= Database.max_connections


def _wake_cost(tmp_path, history: int) -> int:  # type: ignore[no-untyped-def]
    """SQLite VM instructions of the registry work of 250 wakes (birth, telemetry, event and the
    re-publication of unacknowledged commands) for a device with ``history`` rows of telemetry,
    events and finished commands already stored."""
    from camfleet.controller import registry
    from camfleet.controller.commands import Commands
    from camfleet.controller.metrics import Metrics
    from camfleet.controller.storage import SqliteDatabase
    from camfleet.controller.storage.migrations import migrate
    from camfleet.controller.storage.sqlite import WAL_SIZE_LIMIT
    from camfleet.proto.v1 import telemetry_pb2

    db = SqliteDatabase(tmp_path / f"h{history}.sqlite3")
    migrate(db)
    with db.read() as tx:  # the WAL cannot keep a spike's size on the SD card
        assert tx.scalar("PRAGMA journal_size_limit") == WAL_SIZE_LIMIT
    keep = 1000
    telemetry, events = registry.History("telemetry", keep), registry.History("events", keep)
    commands = Commands(db, lambda *a, **k: None, Metrics())
    with db.transaction() as tx:
        for i in range(history):
            tx.execute(
                "INSERT INTO telemetry (device_id, ts_ms, received_ms, session, data) "
                "VALUES ('cam', ?, ?, 1, '{}')",
                (i, i),
            )
            tx.execute(
                "INSERT INTO events (device_id, ts_ms, received_ms, session, type, severity, "
                "message, attributes) VALUES ('cam', ?, ?, 1, 'x', 'info', '', '{}')",
                (i, i),
            )
            tx.execute(
                "INSERT INTO commands (id, device_id, action, payload, status, created_ms, "
                "updated_ms) VALUES (?, 'cam', 'capture', x'', 'done', ?, ?)",
                (f"c{i}", i, i),
            )
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    with db.transaction() as tx:
        tx._cur.connection.set_progress_handler(count, 1)  # the pool's only connection
    for wake in range(250):
        now = 10_000_000 + wake
        birth = state_pb2.DeviceState(presence=state_pb2.PRESENCE_ONLINE, session=wake + 1)
        with db.transaction() as tx:
            registry.apply_state(tx, "cam", birth, now)
            registry.add_telemetry(tx, "cam", telemetry_pb2.Telemetry(uptime_ms=1), now, telemetry)
            registry.add_event(tx, "cam", telemetry_pb2.Event(type="wake"), now, events)
        commands.resend_after_birth(["cam"])
    db.close()
    return steps


def test_registry_work_per_wake_does_not_grow_with_history(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Counted in SQLite VM instructions, not time: deterministic on a loaded machine. Counting a
    device's telemetry and events on every insert, or finding its unacknowledged commands
    through all its commands, made the cost grow with the rows stored (issue 15)."""
    short, long = _wake_cost(tmp_path, 20), _wake_cost(tmp_path, 990)
    assert long < short * 1.3, (short, long)
