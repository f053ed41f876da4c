"""Frame files behind one interface: a local directory by default (an object store fits too).

Keys are relative paths like ``frames/{device}/{YYYY-MM-DD}/{HHMMSS}_{session}-{seq}.jpg`` so the
directory is browsable as it is. ``put_batch`` is the group commit of the file side: when it
returns, the batch's bytes are durable. ``LocalFrameStore`` gets there by appending the batch to
a segment log with one ``fdatasync`` (``frames.log``); once the caller has committed the index
rows (``committed``), a low-priority thread writes the browsable files (temporary name + rename:
a reader never sees half a JPEG), syncs them once per pass (``syncfs``), and only then deletes the
log segments they came from. After a crash, ``recover`` replays what the log still holds into
files, for the frames the index has.
"""

from __future__ import annotations

import array
import collections
import ctypes
import ctypes.util
import datetime as dt
import fcntl
import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camfleet.atomic import sync_dir
from camfleet.controller.frames.log import FrameLog, abandoned, read_at, read_segment
from camfleet.controller.ratelog import RateLimitedLog

log = logging.getLogger("camfleet.controller.frames.store")

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}

#: ``indexed(keys)`` -> {key: sha256 hex} for the keys whose frame the index holds.
Indexed = Callable[[list[str]], dict[str, str]]


def frame_key(
    device_id: str,
    session: int,
    seq: int,
    captured_at_ms: int,
    content_type: str,
    incarnation: bytes = b"",
    conflict_sha256: bytes = b"",
) -> str:
    """The store key of a frame. The same frame always gets the same key (redelivery-safe).

    ``{HHMMSS}_{session}-{seq}[_{incarnation}][_c{sha256 prefix}].{ext}``: frames of another
    incarnation, and a conflict (same identity, other digest), never share a file with the first.
    """
    day, hms = _utc_parts(max(captured_at_ms, 0) // 1000)
    ext = _EXTENSIONS.get(content_type, "bin")
    tag = f"_{incarnation_tag(incarnation)}" if incarnation else ""
    if conflict_sha256:
        tag += f"_c{conflict_sha256.hex()[:16]}"
    return f"frames/{device_id}/{day}/{hms}_{session}-{seq}{tag}.{ext}"


def incarnation_tag(incarnation: bytes) -> str:
    """The text form of an incarnation id (its hex; a digest of it when it is oversized)."""
    if len(incarnation) <= 16:
        return incarnation.hex()
    return hashlib.sha256(incarnation).hexdigest()[:32]


@functools.lru_cache(maxsize=4096)
def _utc_parts(seconds: int) -> tuple[str, str]:
    # Frames of one batch share a handful of seconds: format each second once.
    when = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return f"{when:%Y-%m-%d}", f"{when:%H%M%S}"


class FrameStore:
    """What the controller needs from a place that keeps frame bytes."""

    def put_batch(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every (key, data); durable when this returns."""
        raise NotImplementedError

    def committed(self) -> None:
        """The index rows of the last ``put_batch`` are committed (files may appear now)."""

    def recover(self, indexed: Indexed) -> int:
        """After a crash: finish what the last run made durable but did not finish."""
        return 0

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every committed frame is in its final place; False on timeout."""
        return True

    def pending(self) -> int:
        """Committed frames whose final file is not written yet."""
        return 0

    def close(self) -> None:
        """Finish pending work (bounded) and release resources."""

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def path(self, key: str) -> Path | None:
        """A local path for streaming, when the store has one (and the file exists yet)."""
        return None

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def keys(self) -> Iterator[str]:
        raise NotImplementedError


class LocalFrameStore(FrameStore):
    """Files under ``root``, made durable first by a frame log under ``root/frame-log``."""

    def __init__(
        self,
        root: Path,
        threads: int = 1,
        max_pending_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = FrameLog(self.root / "frame-log", segment_bytes)
        self.max_pending_bytes = max_pending_bytes
        self._pool = ThreadPoolExecutor(threads, "camfleet-files") if threads > 1 else None
        self._syncfs = _load_syncfs()
        self._ratelog = RateLimitedLog(log)  # a full disk fails every retry: not a line each
        self._known_dirs: set[str] = set()
        self._cond = threading.Condition()
        #: Put down by the last put_batch, not yet committed.
        self._staged: list[_Record] = []
        #: Committed, file not yet durable; ``_pending`` by key, for ``get``. The bytes stay in
        #: the frame log, not in memory: keeping 50 KB buffers alive costs page faults.
        self._queue: collections.deque[_Record] = collections.deque()
        self._pending: dict[str, _Record] = {}
        self._pending_bytes = 0
        self._busy = 0
        #: Records per segment whose file is not durable yet (staged or queued).
        self._outstanding: dict[int, int] = collections.defaultdict(int)
        self._cancelled: set[str] = set()
        self._stopping = False
        self._flushing = 0
        self._last_put = 0.0
        #: Seconds without a batch after which ingest counts as paused (files get written).
        self.idle_s = 0.2
        self._thread: threading.Thread | None = None
        self.remove_orphan_temporaries()

    # --- the durable path (writer thread) -------------------------------------------------------

    def put_batch(self, items: Sequence[tuple[str, bytes]]) -> None:
        for key, _ in items:
            self._full(key)
        with self._cond:
            self._abandon_staged()
            # Backpressure: the files must keep up in the long run; wait while too far behind.
            while self._pending_bytes > self.max_pending_bytes and not self._stopping:
                self._cond.wait(1.0)
        if not items:
            return
        segment, offsets = self.log.append(items)
        with self._cond:
            self._last_put = time.monotonic()
            self._staged = [
                _Record(segment, key, offset, len(data))
                for (key, data), offset in zip(items, offsets, strict=True)
            ]
            self._outstanding[segment] += len(items)

    def committed(self) -> None:
        with self._cond:
            staged, self._staged = self._staged, []
            if not staged:
                return
            for record in staged:
                self._queue.append(record)
                self._pending[record.key] = record
                self._pending_bytes += record.length
            self._cond.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._materialize_loop, name="camfleet-files", daemon=True
            )
            self._thread.start()

    def _abandon_staged(self) -> None:
        # A batch whose index commit failed: its records stay in the log, but recover() only
        # replays frames the index has.
        for record in self._staged:
            self._outstanding[record.segment] -= 1
        self._staged = []

    # --- behind the ack: the browsable files ---------------------------------------------------

    def _materialize_loop(self) -> None:
        try:  # yield the CPU to ingest; when the writer waits for us (backpressure) ingest is
            # idle anyway, so a low priority does not throttle it
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass
        while True:
            with self._cond:
                if not self._wait_for_work():
                    return
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), 256))]
                batch = [r for r in batch if r.key not in self._cancelled or self._forget(r)]
                self._busy = len(batch)
            try:
                self._write_files(self._read_records(batch))
            except Exception:
                self._ratelog(
                    "files", logging.ERROR, "writing %d frame files failed; retrying",
                    len(batch), exc=True,
                )  # fmt: skip
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                    self._busy = 0
                    self._cond.wait(1.0)
                continue
            with self._cond:
                for entry in batch:
                    self._forget(entry)
                self._busy = 0
                self._delete_finished_segments()
                self._cond.notify_all()

    def _wait_for_work(self) -> bool:
        """Block until files should be written; False once stopping with nothing left.

        Files are written when ingest pauses (no batch for ``idle_s``), or at once when the
        backlog passes half of ``max_pending_bytes``, or when someone flushes: a burst is stored
        at the speed of the frame log, and file creation (20-550 us of kernel CPU each on ext4)
        uses the quiet time after it. ``put_batch`` waits when the backlog is full, so sustained
        ingest is bounded by file creation in the end.
        """
        while True:
            if not self._queue:
                if self._stopping:
                    return False
                self._cond.wait()
                continue
            if (
                self._stopping
                or self._flushing
                or self._pending_bytes > self.max_pending_bytes // 2
            ):
                return True
            quiet_in = self._last_put + self.idle_s - time.monotonic()
            if quiet_in <= 0:
                return True
            self._cond.wait(quiet_in)

    def _read_records(self, batch: list[_Record]) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        fds: dict[int, int] = {}
        try:
            for r in batch:
                if r.segment not in fds:
                    fds[r.segment] = os.open(self.log.path(r.segment), os.O_RDONLY | os.O_CLOEXEC)
                out.append((r.key, read_at(fds[r.segment], r.offset, r.length)))
        finally:
            for fd in fds.values():
                os.close(fd)
        return out

    def _forget(self, record: _Record) -> bool:
        if record.key in self._cancelled:
            self._cancelled.discard(record.key)
            (self.root / record.key).unlink(missing_ok=True)
        if self._pending.get(record.key) is record:
            del self._pending[record.key]
        self._pending_bytes -= record.length
        self._outstanding[record.segment] -= 1
        return False

    def _delete_finished_segments(self) -> None:
        for segment in list(self._outstanding):
            if segment < self.log.current and self._outstanding[segment] <= 0:
                del self._outstanding[segment]
                self.log.delete(segment)

    def _write_files(self, items: Sequence[tuple[str, bytes]]) -> None:
        if not items:
            return
        parents = set()
        for key, _ in items:
            parent = f"{self.root}/{key}".rpartition("/")[0]
            if parent not in self._known_dirs:
                self._make_dirs(parent)
            parents.add(parent)
        if self._pool is None or len(items) < 4:
            for item in items:
                self._write_one(item)
        else:
            list(self._pool.map(self._write_one, items))
        self._sync({Path(d) for d in parents})

    def _make_dirs(self, directory: str) -> None:
        """Create ``frames/{device}/{day}``, marking ``frames`` and ``frames/{device}`` as tops of
        directory hierarchies (ext4's ``chattr +T``).

        ext4 puts a file's inode in its directory's block group, and a subdirectory in its
        parent's group unless the parent is a "top directory": then its subdirectories are spread
        over the groups with the most free inodes. Without a journal, allocating an inode
        skips, one by one, every inode of the group freed in the last 5-300 s (retention, a
        deleted data directory): creating a file then measured 430-610 us of CPU in such a group
        against 18-25 us in a directory placed by the +T spreading.
        """
        rel = directory[len(str(self.root)) + 1 :].split("/")
        path = str(self.root)
        for depth, part in enumerate(rel):
            path = f"{path}/{part}"
            if path in self._known_dirs:
                continue
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            if depth < len(rel) - 1:
                _spread_subdirectories(path)
            self._known_dirs.add(path)

    def recover(self, indexed: Indexed) -> int:
        """Replay the frame logs that dead processes left into files (frames the index has,
        whose bytes match the index's SHA-256), sync them, and delete those logs."""
        done = 0
        for _directory, segments in abandoned(self.log.base):
            for path in segments:
                records = dict(read_segment(path))
                known = indexed(list(records))
                items = [
                    (key, data)
                    for key, data in records.items()
                    if key in known and hashlib.sha256(data).hexdigest() == known[key]
                ]
                self._write_files(items)  # synced before the directory goes
                done += len(items)
        if done:
            log.info("replayed %d frame files from the frame log", done)
        return done

    def flush(self, timeout: float = 60.0) -> bool:
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)
            finally:
                self._flushing -= 1

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._busy

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        self.log.close()
        with self._cond:
            self._delete_finished_segments()
        self.log.close_and_remove()

    # --- files ---------------------------------------------------------------------------------

    def remove_orphan_temporaries(self) -> int:
        """Delete temporary files left by a writer that died mid-write (its pid is gone)."""
        removed = 0
        for tmp in self.root.rglob(".*.tmp"):
            try:
                pid = int(tmp.name.rsplit(".", 2)[-2])
            except (ValueError, IndexError):
                continue
            if pid != os.getpid() and _alive(pid):
                continue
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed

    def _full(self, key: str) -> Path:
        if key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
            raise ValueError(f"store key {key!r} is not a plain relative path")
        return self.root / key

    def _write_one(self, item: tuple[str, bytes]) -> None:
        key, data = item
        final = f"{self.root}/{key}"
        parent, _, name = final.rpartition("/")
        tmp = f"{parent}/.{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._syncfs is None:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)

    def _sync(self, dirs: set[Path]) -> None:
        if self._syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if self._syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
        for d in dirs:  # fallback: the files are fsynced; make their renames durable too
            sync_dir(d)

    def get(self, key: str) -> bytes:
        with self._cond:
            record = self._pending.get(key)
        if record is not None:
            try:
                return self.log.read(record.segment, record.offset, record.length)
            except FileNotFoundError:
                pass  # written meanwhile, and its segment deleted
        return self._full(key).read_bytes()

    def path(self, key: str) -> Path | None:
        with self._cond:
            if key in self._pending:
                return None  # not written yet: get() serves the bytes
        return self._full(key)

    def delete(self, key: str) -> None:
        with self._cond:
            if key in self._pending:
                self._cancelled.add(key)
        try:
            self._full(key).unlink()
        except FileNotFoundError:
            pass

    def keys(self) -> Iterator[str]:
        for path in (self.root / "frames").rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.root).as_posix()


@dataclass(frozen=True, slots=True)
class _Record:
    """Where a committed frame's bytes are in the frame log."""

    segment: int
    key: str
    offset: int
    length: int


_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def _spread_subdirectories(path: str) -> None:
    """Set the "top of directory hierarchy" flag (a placement hint; ignored where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & _FS_TOPDIR_FL:
            flags[0] |= _FS_TOPDIR_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
    except OSError:
        pass  # tmpfs, XFS without the flag, not the owner: only the placement hint is lost
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load_syncfs() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn
