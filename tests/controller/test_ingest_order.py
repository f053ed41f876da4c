"""The order that makes a frame safe: frame log written -> fdatasync -> index committed ->
receipt published -> broker acknowledged; and what happens when a step fails or the process
dies between two of them (the frame is in the index only if it is durable, and is stored once
when it is delivered again)."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from camfleet.controller.frames import index as frames_index
from camfleet.mosquitto import Mosquitto
from camfleet.proto import topics
from camfleet.proto.topics import Kind
from camfleet.testing.controller_process import ControllerProcess, Waiter, frame_rows, read_db
from camfleet.testing.sim_device import SimDevice, unique_id

from .test_ingest_durability import assert_stored_exactly_once

_PUBLISH, _PUBACK = 0x30, 0x40


def _frame_log_fd(fd: int) -> bool:
    try:
        return "/frame-log/" in os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False


def _registered(data: Path, device_id: str) -> Callable[[], bool]:
    def check() -> bool:
        db = read_db(data)
        try:
            with db.read() as tx:
                return tx.one("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)) is not None
        finally:
            db.close()

    return check


def _quiet(ctl: Any, dev: SimDevice, data: Path) -> None:
    """Wait until the device's birth is committed and acknowledged (the writer is idle)."""
    assert Waiter(ctl).wait_for(_registered(data, dev.device_id), 20)
    assert ctl.writer.idle.wait(60)


def test_frame_log_sync_then_index_then_receipt_then_broker_ack(
    controllers, devices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches each step moved before the one it depends on: an fdatasync before the bytes are
    written or after the index commit (or none at all), a receipt published before the index
    commit, a PUBACK queued before the receipt (a controller killed between them would leave
    the device without its receipt and without a redelivery)."""
    data = tmp_path / "data"
    ctl = controllers(data)
    dev = devices("order")
    _quiet(ctl, dev, data)
    events: list[tuple[Any, ...]] = []
    lock = threading.Lock()
    # captured long before it arrives, content type left out: the key comes from the capture
    frame = dev.make_frame(size=3000, captured_at_ms=1_767_225_601_000, content_type="")
    key = (frame.session, frame.seq)

    def indexed() -> bool:
        return any((r["session"], r["seq"]) == key for r in frame_rows(data, dev.device_id))

    def record(*event: Any) -> None:
        with lock:
            events.append(event)

    for name in ("pwrite", "pwritev"):
        real_write = getattr(os, name)

        def write(fd: int, *args: Any, _real: Any = real_write) -> int:
            if _frame_log_fd(fd):
                record("write")
            return _real(fd, *args)  # type: ignore[no-any-return]

        monkeypatch.setattr(os, name, write)
    real_sync = os.fdatasync

    def fdatasync(fd: int) -> None:
        if _frame_log_fd(fd):
            record("sync", indexed())
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    client = ctl.channel.client
    real_queue = client._packet_queue
    receipt_topic = topics.device_topic(dev.device_id, Kind.RECEIPT).encode()

    def packet_queue(command: int, packet: Any, *args: Any, **kw: Any) -> Any:
        if command & 0xF0 == _PUBLISH and receipt_topic in bytes(packet):
            record("receipt", indexed())
        elif command & 0xF0 == _PUBACK:
            record("puback")
        return real_queue(command, packet, *args, **kw)

    monkeypatch.setattr(client, "_packet_queue", packet_queue)

    dev.publish_frame(frame)

    assert dev.wait_receipted(timeout=20)
    assert ctl.writer.idle.wait(60)
    with lock:
        seen = list(events)
    # the bytes, then their sync (not yet indexed), then the receipt (indexed), then the ack
    assert seen[0] == ("write",), seen
    assert seen[1:] == [("sync", False), ("receipt", True), ("puback",)], seen
    (row,) = frame_rows(data, dev.device_id)
    assert row["store_key"] == (
        f"frames/{dev.device_id}/2026-01-01/000001_{frame.session}-{frame.seq}.jpg"
    )
    assert row["content_type"] == "image/jpeg" and row["captured_at_ms"] == 1_767_225_601_000


def _fail_while(flag: threading.Event, real: Callable[..., Any], exc: Exception) -> Any:
    def wrapper(*args: Any, **kw: Any) -> Any:
        if flag.is_set():
            raise exc
        return real(*args, **kw)

    return wrapper


@pytest.mark.parametrize("step", ["frame_log_sync", "index_commit"])
def test_a_failed_store_is_neither_indexed_nor_receipted_and_is_stored_when_sent_again(
    step: str, controllers, devices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frame log's fdatasync (EIO), or the index insert, fails for a batch. Catches a writer
    that indexes or receipts a frame whose batch failed (the device would delete the only copy),
    one that leaves a browsable file for it, and a dedup that then refuses the frame when the
    device sends it again."""
    data = tmp_path / "data"
    ctl = controllers(data)
    dev = devices("fail")
    _quiet(ctl, dev, data)
    failing = threading.Event()
    if step == "frame_log_sync":
        real_sync = os.fdatasync

        def fdatasync(fd: int) -> None:
            if failing.is_set() and _frame_log_fd(fd):
                raise OSError(errno.EIO, "Input/output error")
            real_sync(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
    else:
        monkeypatch.setattr(
            frames_index,
            "insert",
            _fail_while(failing, frames_index.insert, RuntimeError("database is locked")),
        )
    failing.set()
    dev.send_frames(3, size=2500)
    waiter = Waiter(ctl)
    assert waiter.wait_for(lambda: ctl.metrics.total("writer_job_errors_total") >= 3, 20)
    assert ctl.writer.idle.wait(60)
    assert frame_rows(data, dev.device_id) == []
    assert dev.receipted == set()
    assert ctl.store.flush(20)
    assert not (data / "frames").exists() or not any(
        p.is_file() for p in (data / "frames").rglob("*")
    ), "a file for a frame whose batch failed"
    failing.clear()
    assert dev.replay_spool() == 3  # the device still has them: it got no receipt
    assert dev.wait_receipted(timeout=20)
    assert waiter.wait_for(lambda: len(frame_rows(data, dev.device_id)) == 3, 20)
    assert ctl.store.flush(20)
    assert_stored_exactly_once(data, [dev])


_DIE_AT = '''\
"""Test hook: the controller dies (like kill -9) at one point of its first frame batch."""
import os
from pathlib import Path

from camfleet.controller.frames import index as frames_index
from camfleet.controller.ingest import writer

MARK = Path(os.environ["CAMFLEET_TEST_DIED"])
POINT = os.environ["CAMFLEET_TEST_DIE_AT"]


def die():
    if not MARK.exists():
        MARK.write_text(POINT)
        os._exit(9)


if POINT == "index_commit":
    _insert = frames_index.insert

    def insert(tx, entries, stored_ms):
        _insert(tx, entries, stored_ms)
        if entries:
            die()  # the rows are written but the transaction never commits

    frames_index.insert = insert
else:
    from camfleet.proto.topics import Kind

    _acknowledge = writer.acknowledge
    _process = writer.Writer._process
    frames_in_batch = []

    def process(self, batch):
        frames_in_batch[:] = [j for j in batch if j.kind is Kind.FRAME]
        _process(self, batch)

    def acknowledge(deliveries):
        if frames_in_batch:  # the first batch with a frame (not the birth's)
            die()  # the receipt is queued (or sent), the PUBACK never is
        _acknowledge(deliveries)

    writer.Writer._process = process
    writer.acknowledge = acknowledge
'''


@pytest.mark.parametrize("point", ["index_commit", "receipt_before_ack"])
def test_killed_around_the_index_commit_or_before_the_ack_stores_every_frame_once(
    point: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The controller process dies inside the index transaction (the frame log has the bytes,
    the index never commits), or after queueing the receipt and before the PUBACK. Catches a
    restart that replays frame-log bytes the index does not have into files, a redelivery that
    is not stored, or one stored twice; the device ends with every frame receipted."""
    data = tmp_path / "data"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_DIE_AT)
    died = tmp_path / "died"
    dying = ControllerProcess(
        mosquitto.host,
        mosquitto.port,
        data,
        PYTHONPATH=str(hook),
        CAMFLEET_TEST_DIED=str(died),
        CAMFLEET_TEST_DIE_AT=point,
    )
    dying.start()
    dev = SimDevice(mosquitto.host, mosquitto.port, unique_id("die")).connect()
    try:
        dev.send_frames(5, size=4000)
        assert dying.proc is not None
        dying.proc.wait(30)
        assert died.read_text() == point  # it died where the test says, not elsewhere
        if point == "index_commit":
            assert frame_rows(data, dev.device_id) == []
        restarted = ControllerProcess(mosquitto.host, mosquitto.port, data)
        restarted.start()  # the broker redelivers what was never acknowledged
        assert dev.wait_receipted(timeout=30), "a frame was never receipted"
        restarted.stop()  # flushes the frame files
        assert_stored_exactly_once(data, [dev])
        for r in frame_rows(data, dev.device_id):
            assert hashlib.sha256((data / r["store_key"]).read_bytes()).hexdigest() == r["sha256"]
    finally:
        dying.stop()
        dev.disconnect()


def test_a_failing_frame_does_not_take_the_rest_of_its_batch_down(
    controllers, devices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Device A's frames cannot be indexed (its insert fails), device B's frames share the batch,
    each of them twice. Catches a writer whose one-by-one retry of a failed batch loses the jobs
    that do succeed (not receipted, not acknowledged, or the writer thread dying on them), and
    one that takes a frame repeated inside one batch for two new frames."""
    data = tmp_path / "data"
    ctl = controllers(data)
    gate, bad, good = devices("gate"), devices("bad"), devices("good")
    for dev in (gate, bad, good):
        _quiet(ctl, dev, data)
    release, held, queued = threading.Event(), threading.Event(), threading.Event()
    insert, submit = frames_index.insert, ctl.writer.submit

    def gated_insert(tx: Any, entries: list[Any], stored_ms: int) -> None:
        if any(e.device_id == gate.device_id for e in entries):
            held.set()
            assert release.wait(60)  # hold the writer while the next batch queues up
        if any(e.device_id == bad.device_id for e in entries):
            raise RuntimeError("constraint failed")
        insert(tx, entries, stored_ms)

    def counting_submit(job: Any) -> None:
        submit(job)
        if ctl.writer.depth() >= 6:
            queued.set()

    client = ctl.channel.client
    real_queue = client._packet_queue
    pubacks: list[int] = []

    def packet_queue(command: int, packet: Any, *args: Any, **kw: Any) -> Any:
        if command & 0xF0 == _PUBACK:
            pubacks.append(len(packet) // 4)  # Acker.many queues several in one buffer
        return real_queue(command, packet, *args, **kw)

    monkeypatch.setattr(client, "_packet_queue", packet_queue)
    monkeypatch.setattr(frames_index, "insert", gated_insert)
    monkeypatch.setattr(ctl.writer, "submit", counting_submit)
    gate.send_frames(1, size=1000)
    assert held.wait(60)  # the gate's frame is in a batch of its own, and holds the writer
    bad.send_frames(2, size=1000)
    good.send_frames(2, size=1000)
    good.replay_spool()  # the same two frames again, in the same batch
    assert queued.wait(60)  # the six frames wait behind the gate: one batch
    release.set()
    assert good.wait_receipted(timeout=20)
    assert gate.wait_receipted(timeout=20)
    assert ctl.writer.idle.wait(60)
    assert len(frame_rows(data, good.device_id)) == 2
    assert frame_rows(data, bad.device_id) == [] and bad.receipted == set()
    assert ctl.writer._thread.is_alive()  # still ingesting
    # every delivery is acknowledged, the failed ones too (held, they would fill the broker's
    # window for every device): no receipt covers them, so their device keeps and re-sends them
    assert sum(pubacks) == 7
    assert ctl.metrics.total("frames_refused_total") == 2
    assert ctl.metrics.total("frames_duplicate_total") == 2  # not stored twice in one batch
    assert ctl.metrics.total("frames_stored_total") == 3
    monkeypatch.setattr(frames_index, "insert", insert)
    bad.replay_spool()
    assert bad.wait_receipted(timeout=20)
    assert ctl.store.flush(20)
    assert_stored_exactly_once(data, [gate, bad, good])


def test_a_frame_repeated_inside_one_batch_is_stored_once(
    controllers, devices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redelivery and a replay of the same frames land in one batch. Catches a dedup that only
    looks at the index (both copies would count as new: stored twice, counted twice)."""
    data = tmp_path / "data"
    ctl = controllers(data)
    gate, dev = devices("gate"), devices("twice")
    for d in (gate, dev):
        _quiet(ctl, d, data)
    release, held, queued = threading.Event(), threading.Event(), threading.Event()
    insert, submit = frames_index.insert, ctl.writer.submit

    def gated_insert(tx: Any, entries: list[Any], stored_ms: int) -> None:
        if any(e.device_id == gate.device_id for e in entries):
            held.set()
            assert release.wait(60)
        insert(tx, entries, stored_ms)

    def counting_submit(job: Any) -> None:
        submit(job)
        if ctl.writer.depth() >= 4:
            queued.set()

    monkeypatch.setattr(frames_index, "insert", gated_insert)
    monkeypatch.setattr(ctl.writer, "submit", counting_submit)
    gate.send_frames(1, size=1000)
    assert held.wait(60)
    dev.send_frames(2, size=1000)
    dev.replay_spool()
    assert queued.wait(60)
    release.set()
    assert dev.wait_receipted(timeout=20)
    assert ctl.writer.idle.wait(60)
    assert ctl.metrics.total("frames_stored_total") == 3
    assert ctl.metrics.total("frames_duplicate_total") == 2
    assert ctl.store.flush(20)
    assert_stored_exactly_once(data, [gate, dev])
