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

from .harness import Waiter


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
