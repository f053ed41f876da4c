"""The writer: one thread that owns registry writes and commits them in groups.

The MQTT thread decodes and queues; the writer takes everything queued (up to a limit), writes
the new frames' files and syncs them once (FrameStore.put_batch), then applies every job in ONE
transaction (one fsync of the WAL), and only then acknowledges the deliveries to the broker and
runs the after-commit actions (receipts, Home Assistant, command publication). A crash at any
point before the ack means the broker redelivers, and (device, session, seq) dedup makes the
redelivery harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from camfleet.controller import registry
from camfleet.controller.frames import index as frames_index
from camfleet.controller.frames.store import FrameStore, frame_key, incarnation_tag
from camfleet.controller.ingest.diskspace import DiskGuard, is_out_of_space
from camfleet.controller.ingest.jobs import AfterCommit, Delivery, Job
from camfleet.controller.metrics import Metrics, StageClock, thread_cpu_seconds
from camfleet.controller.ratelog import RateLimitedLog
from camfleet.controller.storage.database import Database, Tx
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import frame_pb2

log = logging.getLogger("camfleet.controller.writer")

Handler = Callable[[Tx, Job], AfterCommit | None]


@dataclass
class StoredFrame:
    device_id: str
    frame: frame_pb2.Frame
    store_key: str
    new: bool
    conflict: bool = False


@dataclass
class BatchResult:
    """What one committed batch stored, for receipts and integrations."""

    frames: list[StoredFrame] = field(default_factory=list)

    def receipted(self) -> dict[str, dict[bytes, list[tuple[int, int]]]]:
        """{device: {incarnation: [(session, seq)]}} of the stored (or duplicate) frames."""
        out: dict[str, dict[bytes, list[tuple[int, int]]]] = defaultdict(dict)
        for f in self.frames:
            out[f.device_id].setdefault(f.frame.incarnation, []).append(
                (f.frame.session, f.frame.seq)
            )
        return out


class Writer:
    def __init__(
        self,
        db: Database,
        store: FrameStore,
        handlers: dict[Kind, Handler],
        on_batch: Callable[[BatchResult], None],
        metrics: Metrics,
        max_batch: int = 512,
        max_batch_bytes: int = 64 * 1024 * 1024,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        disk: DiskGuard | None = None,
        after_ack: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.db = db
        #: Work for the batch that no device waits for (integrations, the dashboard's events):
        #: run after the PUBACKs, which free the broker's in-flight window for the next frames.
        self.after_ack = after_ack
        self.disk = disk
        self._ratelog = RateLimitedLog(log)
        self.store = store
        self.handlers = handlers
        self.on_batch = on_batch
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.clock_ms = clock_ms
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="camfleet-writer", daemon=True)
        self.idle = threading.Event()
        metrics.gauge(
            "thread_cpu_seconds",
            "CPU seconds used by each thread (pools summed).",
            thread_cpu_seconds,
        )
        metrics.gauge(
            "frame_files_pending",
            "Frames durable in the frame log whose browsable file is not written yet.",
            store.pending,
        )

    def start(self) -> None:
        # Frames a previous run made durable in the frame log but had not written as files yet.
        def indexed(keys: list[str]) -> dict[str, str]:
            with self.db.read() as tx:
                return frames_index.sha256_of_keys(tx, keys)

        self.store.recover(indexed)
        self._thread.start()

    def submit(self, job: Job) -> None:
        if self.idle.is_set():  # clear() takes a lock: not on every frame
            self.idle.clear()
        self._queue.put(job)

    def call(self, fn: Callable[[Tx], AfterCommit | None]) -> None:
        """Run ``fn(tx)`` in the writer's next transaction (registry writes from other threads)."""
        self.submit(Job(kind=None, device_id="", message=None, call=fn))

    def depth(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.store.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                self.idle.set()
                continue
            if first is None:
                break
            batch, size = [first], _size(first)
            while len(batch) < self.max_batch and size < self.max_batch_bytes:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
                size += _size(job)
            self._process(batch)
            if self._queue.empty():
                self.idle.set()

    def _process(self, batch: list[Job]) -> None:
        acks: list[Delivery] = []
        if self.disk is not None and self.disk.check():
            batch = self._refuse_frames(batch, "disk_low", acks)
        try:
            result, after = self._commit(batch)
            acks += [d for job in batch for d in job.deliveries]
        except Exception as exc:
            if is_out_of_space(exc) and self.disk is not None:
                self.disk.out_of_space()
            self._ratelog(
                "batch", logging.ERROR, "batch of %d failed; applying its jobs one by one",
                len(batch), exc=True,
            )  # fmt: skip
            self.metrics.inc("writer_batch_errors_total")
            result, after = BatchResult(), []
            for job in batch:
                if job.kind is Kind.FRAME and self.disk is not None and self.disk.low:
                    self._refuse_frames([job], "disk_low", acks)
                    continue
                try:
                    r, a = self._commit([job])
                except Exception as exc:
                    if is_out_of_space(exc) and self.disk is not None:
                        self.disk.out_of_space()
                    self.metrics.inc("writer_job_errors_total", kind=str(job.kind))
                    self._ratelog(
                        f"job-{job.kind}", logging.ERROR, "could not store %s from %s: %s",
                        job.kind, job.device_id, exc,
                    )  # fmt: skip
                    if job.kind is Kind.FRAME:
                        # Acknowledged without a receipt: the device keeps the frame and sends
                        # it again; held, it would block the broker's window for everyone.
                        self._refuse_frames([job], "store_error", acks)
                    else:
                        acks += job.deliveries  # counted in writer_job_errors_total{kind}
                    continue
                result.frames += r.frames
                after += a
                acks += job.deliveries
        clock = StageClock(self.metrics)
        self.metrics.inc("writer_batches_total")
        self.metrics.inc("writer_jobs_total", len(batch))
        for action in after:
            try:
                action()
            except Exception:
                self._ratelog("after", logging.ERROR, "after-commit action failed", exc=True)
        try:
            # Receipts are queued BEFORE the broker acks, on the same connection: if a PUBACK
            # reached the broker, the receipt before it did too. The other order loses the
            # receipt when the controller dies between the two (the device would wait for its
            # spool replay).
            self.on_batch(result)
        except Exception:
            self._ratelog("on_batch", logging.ERROR, "batch callback failed", exc=True)
        acknowledge(acks)
        clock.lap("writer_receipts_and_acks")
        if self.after_ack is not None:
            try:
                self.after_ack(result)
            except Exception:
                self._ratelog("after_ack", logging.ERROR, "after-ack callback failed", exc=True)

    def _refuse_frames(self, batch: list[Job], reason: str, acks: list[Delivery]) -> list[Job]:
        """Take the frame jobs out of ``batch``: acknowledged, not stored, not receipted."""
        kept = []
        for job in batch:
            if job.kind is Kind.FRAME:
                self.metrics.inc("frames_refused_total", reason=reason)
                acks += job.deliveries
            else:
                kept.append(job)
        return kept

    def _commit(self, batch: list[Job]) -> tuple[BatchResult, list[AfterCommit]]:
        clock = StageClock(self.metrics)
        result = BatchResult()
        frame_jobs = [j for j in batch if j.kind is Kind.FRAME]
        new_entries: list[frames_index.IndexEntry] = []
        files: list[tuple[str, bytes]] = []
        conflicts = 0
        if frame_jobs:
            frames = []
            for job in frame_jobs:
                frame = job.message
                assert isinstance(frame, frame_pb2.Frame)
                ident = (
                    job.device_id,
                    incarnation_tag(frame.incarnation),
                    frame.session,
                    frame.seq,
                )
                frames.append((job, frame, ident, frame.sha256.hex()))
            with self.db.read() as tx:
                seen = frames_index.digests(tx, [ident for _, _, ident, _ in frames])
            for job, frame, ident, digest in frames:
                digests = seen.setdefault(ident, set())
                new = digest not in digests
                conflict = new and bool(digests)
                digests.add(digest)
                key = frame_key(
                    job.device_id,
                    frame.session,
                    frame.seq,
                    frame.captured_at_ms or job.received_ms,
                    frame.content_type or "image/jpeg",
                    frame.incarnation,
                    frame.sha256 if conflict else b"",
                )
                result.frames.append(StoredFrame(job.device_id, frame, key, new, conflict))
                if new:
                    files.append((key, frame.data))  # upb copies bytes on each access
                    new_entries.append(
                        frames_index.IndexEntry(
                            ident[0], ident[1], ident[2], ident[3], key, frame, job.received_ms,
                            conflict,
                        )
                    )  # fmt: skip
                if conflict:
                    conflicts += 1
                    self._ratelog(
                        f"conflict-{job.device_id}", logging.WARNING,
                        "frame %s %d-%d (incarnation %s) arrived again with another SHA-256: "
                        "kept as a conflict (%s)", job.device_id, frame.session, frame.seq,
                        ident[1] or "none", key,
                    )  # fmt: skip
            clock.lap("writer_dedup")
            self.store.put_batch(files)
            clock.lap("writer_files")
        after: list[AfterCommit] = []
        now = self.clock_ms()
        with self.db.transaction() as tx:
            for job in batch:
                if job.kind is Kind.FRAME:
                    continue
                action: AfterCommit | None = None
                if job.kind is None:
                    action = job.call(tx) if job.call is not None else None
                elif (handler := self.handlers.get(job.kind)) is not None:
                    action = handler(tx, job)
                if action is not None:
                    after.append(action)
            if frame_jobs:
                for device_id, live in _live_sessions(frame_jobs).items():
                    registry.frames_seen(tx, device_id, live, now)
                frames_index.insert(tx, new_entries, now)
        if frame_jobs:
            self.store.committed()  # the index has the rows: the files may appear now
        clock.lap("writer_index")
        stored = sum(1 for f in result.frames if f.new)
        self.metrics.inc("frames_stored_total", stored)
        if conflicts:
            self.metrics.inc("frames_conflict_total", conflicts)
        self.metrics.inc("frames_duplicate_total", len(result.frames) - stored)
        self.metrics.inc(
            "frame_bytes_stored_total", sum(f.frame.size for f in result.frames if f.new)
        )
        return result, after


def acknowledge(deliveries: list[Delivery]) -> None:
    """Acknowledge deliveries, QoS 1 ones in one go per channel when it can (``Acker.many``)."""
    batched: dict[Any, list[int]] = {}
    for d in deliveries:
        many = getattr(d.ack, "many", None) if d.qos == 1 else None
        if many is None:
            d.done()
        else:
            batched.setdefault(many, []).append(d.mid)
    for many, mids in batched.items():
        many(mids)


def _live_sessions(jobs: list[Job]) -> dict[str, dict[str, int]]:
    """{device: {incarnation tag: highest session of its live (not historical) frames}}."""
    out: dict[str, dict[str, int]] = {}
    for job in jobs:
        frame = job.message
        assert isinstance(frame, frame_pb2.Frame)
        live = out.setdefault(job.device_id, {})
        if not frame.historical:
            tag = incarnation_tag(frame.incarnation)
            live[tag] = max(live.get(tag, 0), frame.session)
    return out


def _size(job: Job) -> int:
    if job.kind is Kind.FRAME and isinstance(job.message, frame_pb2.Frame):
        return job.message.size  # the codec checked it equals len(data)
    return 256
