"""The writer in-process, on a real SQLite registry and a real frame store: batching, dedup,
conflicts, failures applied job by job, the disk watermarks, acks and the counters /metrics
shows. Fast (no broker, no controller process): these pin what the process-level tests in
test_ingest_order.py and test_ingest_durability.py reach only through whole batches."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from camfleet.controller.frames import index as frames_index
from camfleet.controller.frames.store import LocalFrameStore, frame_key
from camfleet.controller.ingest.diskspace import DiskGuard
from camfleet.controller.ingest.jobs import Delivery, Job
from camfleet.controller.ingest.writer import BatchResult, Writer, acknowledge
from camfleet.controller.metrics import Metrics
from camfleet.controller.storage.database import Tx
from camfleet.controller.storage.migrations import migrate
from camfleet.controller.storage.sqlite import SqliteDatabase
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import frame_pb2

NOW = 1_790_000_000_000


class Acks:
    """Stands for the controller's Acker: records single acks and batched ones, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, mid: int, qos: int) -> None:
        self.calls.append(("one", (mid, qos)))

    def many(self, mids: list[int]) -> None:
        self.calls.append(("many", list(mids)))

    def mids(self) -> list[int]:
        out: list[int] = []
        for how, arg in self.calls:
            out += arg if how == "many" else [arg[0]]
        return out


def frame(seq: int, data: bytes | None = None, session: int = 1, **kw: Any) -> frame_pb2.Frame:
    data = data if data is not None else b"jpeg-%d" % seq
    fields: dict[str, Any] = dict(captured_at_ms=NOW + seq, content_type="image/jpeg")
    fields.update(kw)
    return frame_pb2.Frame(
        session=session,
        seq=seq,
        size=len(data),
        sha256=hashlib.sha256(data).digest(),
        data=data,
        **fields,
    )


@dataclass
class Rig:
    db: SqliteDatabase
    store: LocalFrameStore
    metrics: Metrics
    acks: Acks
    writer: Writer
    batches: list[BatchResult] = field(default_factory=list)
    mid: int = 0

    def job(self, kind: Kind | None, message: Any = None, device: str = "cam") -> Job:
        self.mid += 1
        return Job(
            kind=kind,
            device_id=device,
            message=message,
            deliveries=[Delivery(self.acks, self.mid, 1)],
            received_ms=NOW + 500_000,
        )

    def frames(self, *frames: frame_pb2.Frame, device: str = "cam") -> list[Job]:
        return [self.job(Kind.FRAME, f, device) for f in frames]

    def run(self, *jobs: Job) -> None:
        """Queue the jobs BEFORE the thread takes any (so they form batches as the limits say),
        then wait until the writer has done them all."""
        for j in jobs:
            self.writer.submit(j)
        if not self.writer._thread.is_alive():
            self.writer.start()
        assert self.writer.idle.wait(30)

    def rows(self) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            return [
                dict(r)
                for r in tx.query(
                    "SELECT device_id, incarnation, session, seq, sha256, conflict, store_key, "
                    "captured_at_ms, content_type, historical FROM frames "
                    "ORDER BY device_id, session, seq, conflict"
                )
            ]

    def device(self, device_id: str = "cam") -> dict[str, Any]:
        with self.db.read() as tx:
            row = tx.one("SELECT * FROM devices WHERE device_id = ?", (device_id,))
        assert row is not None
        return dict(row)

    def receipted(self) -> list[tuple[int, int]]:
        return [
            pair
            for b in self.batches
            for incarnations in b.receipted().values()
            for pairs in incarnations.values()
            for pair in pairs
        ]


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(
        handlers: dict[Kind, Callable[[Tx, Job], Any]] | None = None,
        disk: DiskGuard | None = None,
        **kw: Any,
    ) -> Rig:
        home = tmp_path / f"rig{len(made)}"
        db = SqliteDatabase(home / "registry.sqlite3")
        migrate(db)
        store = LocalFrameStore(home / "store")
        metrics = Metrics()
        batches: list[BatchResult] = []
        writer = Writer(
            db,
            store,
            handlers or {},
            batches.append,
            metrics,
            clock_ms=lambda: NOW + 600_000,
            disk=disk,
            **kw,
        )
        rig = Rig(db, store, metrics, Acks(), writer, batches)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.writer.stop(timeout=30)
        rig.db.close()


def test_a_batch_is_stored_indexed_receipted_and_acked_in_one_go(
    rig_factory: Callable[..., Rig],
) -> None:
    """Catches: a frame left out of the file batch, the index insert or the receipt; the index
    row's identity columns shuffled; the files never written after the commit
    (``committed()`` dropped); the capture time or content type not defaulted (key and row
    taken from ``received_ms`` and image/jpeg); the acks not sent, sent one by one instead of in
    one ``many``, or sent before the receipt callback; the device's session and
    ``last_frame_ms`` not updated; ``frames_stored_total`` / ``frame_bytes_stored_total``
    miscounted."""
    rig = rig_factory()
    order: list[str] = []

    def on_batch(result: BatchResult) -> None:
        order.append(f"receipt after {len(rig.acks.calls)} acks")
        rig.batches.append(result)

    rig.writer.on_batch = on_batch
    plain = frame(3, captured_at_ms=0, content_type="")  # the device left both out
    tagged = frame(1)
    tagged.metadata["zone"] = "gate"
    tagged.metadata["angle"] = "wide"
    jobs = rig.frames(tagged, frame(2, incarnation=b"\x01" * 8), plain)
    rig.run(*jobs)
    assert order == ["receipt after 0 acks"], "the receipt callback must run before any ack"
    assert rig.acks.calls == [("many", [1, 2, 3])]
    rows = rig.rows()
    assert [(r["incarnation"], r["session"], r["seq"]) for r in rows] == [
        ("", 1, 1),
        ("01" * 8, 1, 2),
        ("", 1, 3),
    ]
    with rig.db.read() as tx:  # the same frame always gives the same row text
        assert [r["metadata"] for r in tx.query("SELECT metadata FROM frames ORDER BY seq")] == [
            '{"angle": "wide", "zone": "gate"}',
            "{}",
            "{}",
        ]
    assert rows[2]["captured_at_ms"] == NOW + 500_000  # received_ms stands in
    assert rows[2]["content_type"] == "image/jpeg"
    assert rows[2]["store_key"] == frame_key("cam", 1, 3, NOW + 500_000, "image/jpeg")
    assert rows[2]["store_key"].endswith(".jpg")
    assert sorted(rig.receipted()) == [(1, 1), (1, 2), (1, 3)]
    assert rig.store.flush(30)
    for r, j in zip(rows, jobs, strict=True):
        assert (rig.store.root / r["store_key"]).read_bytes() == j.message.data  # type: ignore[union-attr]
        assert r["sha256"] == j.message.sha256.hex()  # type: ignore[union-attr]
    assert rig.metrics.get("frames_stored_total") == 3
    assert rig.metrics.get("frames_duplicate_total") == 0
    assert rig.metrics.get("frame_bytes_stored_total") == sum(len(j.message.data) for j in jobs)  # type: ignore[union-attr]
    assert rig.metrics.get("writer_batches_total") == 1
    assert rig.metrics.get("writer_jobs_total") == 3
    dev = rig.device()
    assert dev["last_frame_ms"] == NOW + 500_000
    assert dev["last_seen_ms"] == NOW + 600_000


def test_duplicates_and_conflicts_inside_and_across_batches(
    rig_factory: Callable[..., Rig],
) -> None:
    """Catches: a frame repeated in one batch stored twice (the digest not remembered within
    the batch); a redelivery stored again; a frame with the same identity and other bytes
    overwriting the first, or not flagged and counted as a conflict; the duplicate counter
    wrong. Every one of them is receipted and acked (the device may delete it)."""
    rig = rig_factory()
    first = frame(1, b"first")
    rig.run(*rig.frames(first, first))
    rig.run(*rig.frames(first, frame(1, b"other bytes"), frame(2)))
    rows = rig.rows()
    assert [(r["seq"], r["conflict"], r["sha256"]) for r in rows] == [
        (1, 0, hashlib.sha256(b"first").hexdigest()),
        (1, 1, hashlib.sha256(b"other bytes").hexdigest()),
        (2, 0, hashlib.sha256(b"jpeg-2").hexdigest()),
    ]
    assert "_c" in rows[1]["store_key"] and rows[1]["store_key"] != rows[0]["store_key"]
    assert rig.store.flush(30)
    assert (rig.store.root / rows[0]["store_key"]).read_bytes() == b"first"
    assert (rig.store.root / rows[1]["store_key"]).read_bytes() == b"other bytes"
    assert rig.metrics.get("frames_stored_total") == 3
    assert rig.metrics.get("frames_duplicate_total") == 2
    assert rig.metrics.get("frames_conflict_total") == 1
    assert sorted(rig.receipted()) == [(1, 1), (1, 1), (1, 1), (1, 1), (1, 2)]
    assert rig.acks.mids() == [1, 2, 3, 4, 5]


def test_dedup_and_replay_lookups_see_every_key_of_a_large_batch(
    rig_factory: Callable[..., Rig],
) -> None:
    """The index is asked about keys 500 at a time. Catches a chunk loop that skips or loses a
    key at a chunk's edge (step and slice disagreeing, the first chunk not at 0): a redelivered
    batch of 600 would store one frame again, and the frame-log replay after a crash would not
    find one indexed frame (its file never written)."""
    rig = rig_factory(max_batch=600)
    frames = [frame(i) for i in range(1, 601)]
    rig.run(*rig.frames(*frames))
    assert len(rig.batches) == 1
    rig.run(*rig.frames(*frames))
    assert rig.metrics.get("frames_stored_total") == 600
    assert rig.metrics.get("frames_duplicate_total") == 600
    keys = [r["store_key"] for r in rig.rows()]
    with rig.db.read() as tx:
        found = frames_index.sha256_of_keys(tx, [*keys, "frames/cam/none.jpg"])
    assert found == {r["store_key"]: r["sha256"] for r in rig.rows()}


def test_batches_are_bounded_by_count_and_by_bytes(rig_factory: Callable[..., Rig]) -> None:
    """Catches: a batch taking one job more than ``max_batch`` or than ``max_batch_bytes``
    allows (``<`` turned into ``<=``, ``and`` into ``or``, the size counted down), and a job
    dropped while a batch is gathered. Each limit is hit exactly: 100-byte frames, a byte
    limit of 200 makes batches of 2."""
    rig = rig_factory(max_batch=3)
    rig.run(*rig.frames(*[frame(i, bytes([i]) * 100) for i in range(1, 8)]))
    assert [len(b.frames) for b in rig.batches] == [3, 3, 1]
    rig2 = rig_factory(max_batch_bytes=200)
    rig2.run(*rig2.frames(*[frame(i, bytes([i]) * 100) for i in range(1, 6)]))
    assert [len(b.frames) for b in rig2.batches] == [2, 2, 1]
    assert len(rig2.rows()) == 5
    assert rig2.metrics.get("writer_batches_total") == 3


def test_a_stop_marker_inside_a_batch_ends_the_thread_after_that_batch(
    rig_factory: Callable[..., Rig],
) -> None:
    """Catches: the writer missing the stop marker (what ``stop`` queues) when it arrives
    inside a batch: the thread would live on, waiting, after ``stop`` (a thread outliving its
    use), or the jobs before the marker would be dropped."""
    rig = rig_factory()
    for j in rig.frames(frame(1), frame(2)):
        rig.writer.submit(j)
    rig.writer._queue.put(None)  # as stop() does; here it lands in the first batch
    rig.writer.start()
    rig.writer._thread.join(30)
    assert not rig.writer._thread.is_alive()
    assert [r["seq"] for r in rig.rows()] == [1, 2]
    assert rig.acks.mids() == [1, 2]


def test_stop_ends_the_thread_and_closes_the_store(rig_factory: Callable[..., Rig]) -> None:
    """Catches: ``stop`` not queueing its marker (the thread lives on) or not closing the store
    (the frame log's directory and lock left behind, files of committed frames unwritten)."""
    rig = rig_factory()
    rig.store.idle_s = 3600.0  # the files are written by close(), not by the quiet period
    rig.run(*rig.frames(frame(1), frame(2)))
    rig.writer.stop(timeout=30)
    assert not rig.writer._thread.is_alive()
    assert list((rig.store.root / "frame-log").iterdir()) == []
    for seq in (1, 2):
        key = frame_key("cam", 1, seq, NOW + seq, "image/jpeg")
        assert (rig.store.root / key).read_bytes() == b"jpeg-%d" % seq


def test_a_failing_job_is_applied_alone_and_the_rest_of_its_batch_is_kept(
    rig_factory: Callable[..., Rig],
) -> None:
    """Catches, when one job of a batch fails: the other jobs' frames, receipts, after-commit
    actions or acks lost (``+=`` turned into ``-=``, an action not run); the failing job not
    acked (the broker would hold it for ever) or not counted in ``writer_job_errors_total``;
    a handler's or ``call``'s action dropped; a kind without a handler breaking the batch."""
    ran: list[str] = []

    def state(tx: Tx, job: Job) -> Callable[[], None] | None:
        if job.message == "bad":
            raise ValueError("a bad state message")
        return lambda: ran.append(f"state {job.message}")

    rig = rig_factory({Kind.STATE: state})

    def call(tx: Tx) -> Callable[[], None]:
        tx.execute("UPDATE devices SET presence = 'called' WHERE device_id = 'cam'")
        return lambda: ran.append("call")

    rig.run(*rig.frames(frame(1)))
    rig.writer.idle.clear()
    for j in [
        rig.job(Kind.STATE, "good"),
        rig.job(Kind.STATE, "bad"),
        *rig.frames(frame(2)),
        rig.job(Kind.EVENT, "no handler"),
    ]:
        rig.writer.submit(j)
    rig.writer.call(call)  # a registry write from another thread, in the same batch
    rig.run(*rig.frames(frame(3)))
    assert ran == ["state good", "call"]
    assert [r["seq"] for r in rig.rows()] == [1, 2, 3]
    assert sorted(rig.receipted()) == [(1, 1), (1, 2), (1, 3)]
    assert rig.acks.mids() == [1, 2, 3, 4, 5, 6]  # the failed job too
    assert rig.metrics.get("writer_batch_errors_total") == 1
    assert rig.metrics.get("writer_job_errors_total", kind=str(Kind.STATE)) == 1
    assert rig.metrics.total("writer_job_errors_total") == 1
    assert rig.metrics.total("frames_refused_total") == 0
    assert rig.device()["presence"] == "called"


def test_a_frame_whose_store_fails_alone_is_acked_unreceipted_and_refused(
    rig_factory: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches: a frame whose own store fails (EIO on the frame log's sync) receipted, kept
    unacked (blocking the broker's window), or not counted as refused with reason
    store_error; the frames around it lost with it."""
    rig = rig_factory()
    real = os.fdatasync
    calls = 0

    def fdatasync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls in (1, 3):  # the whole batch, then frame 2 on its own
            raise OSError(errno.EIO, "injected")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    rig.run(*rig.frames(frame(1), frame(2), frame(3)))
    assert [r["seq"] for r in rig.rows()] == [1, 3]
    assert sorted(rig.receipted()) == [(1, 1), (1, 3)]
    assert rig.acks.mids() == [1, 2, 3]
    assert rig.metrics.get("frames_refused_total", reason="store_error") == 1
    assert rig.metrics.get("writer_job_errors_total", kind=str(Kind.FRAME)) == 1
    assert rig.metrics.get("frames_stored_total") == 2


class Disk:
    """Free space as statvfs reports it (the real DiskGuard reads it through this)."""

    def __init__(self, free: int) -> None:
        self.free = free

    def __call__(self, path: Path) -> Any:
        return os.statvfs_result((4096, 1, 0, 0, self.free, 0, 0, 0, 0, 255))


def guard(tmp_path: Path, disk: Disk) -> DiskGuard:
    return DiskGuard(tmp_path, low_bytes=1000, resume_bytes=2000, statvfs=disk, min_interval_s=0)


def test_frames_are_refused_while_the_disk_is_low_and_other_jobs_still_apply(
    rig_factory: Callable[..., Rig], tmp_path: Path
) -> None:
    """Catches: frames stored (or not acked) while free space is under the low watermark; the
    other jobs of the batch dropped with them; ``frames_refused_total{reason=disk_low}``
    miscounted; the guard not consulted at all."""
    disk = Disk(free=500)
    ran: list[str] = []
    rig = rig_factory(
        {Kind.STATE: lambda tx, job: lambda: ran.append("state")}, guard(tmp_path, disk)
    )
    rig.run(*rig.frames(frame(1)), rig.job(Kind.STATE, "s"), *rig.frames(frame(2)))
    assert rig.rows() == [] and rig.receipted() == []
    assert ran == ["state"]
    assert sorted(rig.acks.mids()) == [1, 2, 3]
    assert rig.metrics.get("frames_refused_total", reason="disk_low") == 2
    disk.free = 5000
    rig.run(*rig.frames(frame(1)))
    assert [r["seq"] for r in rig.rows()] == [1]


def test_a_batch_failing_with_a_full_disk_refuses_its_frames_until_space_returns(
    rig_factory: Callable[..., Rig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """statvfs still says there is room, but the frame log's sync fails with ENOSPC (a quota,
    reserved blocks). Catches: the out-of-space signal not given to the guard (for the batch,
    or for a job applied alone), and frames then applied one by one (each failing again)
    instead of refused as disk_low; a non-frame job refused with them."""
    disk = Disk(free=10**9)
    ran: list[str] = []

    def state(tx: Tx, job: Job) -> Callable[[], None]:
        if job.message == "bad":
            raise ValueError("a bad state message")
        return lambda: ran.append("state")

    rig = rig_factory({Kind.STATE: state}, guard(tmp_path, disk))
    real = os.fdatasync
    full = threading.Event()

    def fdatasync(fd: int) -> None:
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    full.set()
    rig.run(*rig.frames(frame(1), frame(2)), rig.job(Kind.STATE, "good"))
    assert rig.writer.disk is not None and rig.writer.disk.low
    assert rig.rows() == [] and rig.receipted() == []
    assert ran == ["state"]
    assert rig.metrics.get("frames_refused_total", reason="disk_low") == 2
    assert rig.metrics.total("writer_job_errors_total") == 0
    assert rig.acks.mids() == [1, 2, 3]

    # The batch fails for another reason; the first frame alone hits ENOSPC: the frames after
    # it are refused as disk_low without being tried.
    full.clear()
    rig2 = rig_factory({Kind.STATE: state}, guard(tmp_path / "2", disk))
    calls = 0

    def second_fails(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", second_fails)
    (tmp_path / "2").mkdir()
    rig2.run(rig2.job(Kind.STATE, "bad"), *rig2.frames(frame(1), frame(2)))
    assert rig2.rows() == []
    assert rig2.metrics.get("frames_refused_total", reason="store_error") == 1
    assert rig2.metrics.get("frames_refused_total", reason="disk_low") == 1
    assert rig2.acks.mids() == [1, 2, 3]


def test_live_frames_correct_a_registry_session_and_historical_ones_do_not(
    rig_factory: Callable[..., Rig],
) -> None:
    """The registry holds a session higher than the device runs (only a forged state puts it
    there): live frames prove the real one and move the registry to it. Catches: the frames'
    session not given to the registry at all, and frames replayed from an earlier session
    (``historical``) taken as proof of the current one."""
    rig = rig_factory()
    rig.run(*rig.frames(frame(1, session=1)))
    with rig.db.transaction() as tx:
        tx.execute("UPDATE devices SET session = 9, presence = 'offline' WHERE device_id = 'cam'")
    rig.run(*rig.frames(frame(1, session=3, historical=True)))
    assert (rig.device()["session"], rig.device()["presence"]) == (9, "offline")
    rig.run(*rig.frames(frame(2, session=5), frame(3, session=3, historical=True)))
    assert (rig.device()["session"], rig.device()["presence"]) == (5, "online")
    assert [r["historical"] for r in rig.rows()] == [0, 1, 1, 0]


def test_a_writer_with_nothing_to_do_says_it_is_idle(rig_factory: Callable[..., Rig]) -> None:
    """Catches ``idle`` set only after a batch: a writer that never got a job would never report
    idle (what the tests and the shutdown wait for)."""
    rig = rig_factory()
    rig.writer.start()
    assert rig.writer.idle.wait(30)


def test_acknowledge_batches_qos1_per_acker_and_acks_the_rest_one_by_one() -> None:
    """Catches: QoS 1 deliveries acked one by one when the acker can batch them (one wake-up of
    the network thread per batch is the point of ``many``), mids lost or reordered, a QoS 1
    delivery whose acker cannot batch not acked, a QoS 0 delivery acked (nothing to ack)."""
    a, b = Acks(), Acks()
    plain: list[tuple[int, int]] = []

    def single(mid: int, qos: int) -> None:
        plain.append((mid, qos))

    acknowledge(
        [
            Delivery(a, 1, 1),
            Delivery(b, 2, 1),
            Delivery(a, 3, 1),
            Delivery(single, 4, 1),
            Delivery(a, 5, 0),
            Delivery(single, 6, 0),
        ]
    )
    assert a.calls == [("many", [1, 3])]
    assert b.calls == [("many", [2])]
    assert plain == [(4, 1)]
