"""The frame store and its frame log at the unit level, on real files: the key layout, the
bookkeeping that decides when a segment may go, backpressure, retries, descriptors, file modes,
the fallback without ``syncfs``, and descriptor 0. Each test names the break it catches."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camfleet.controller.frames.log import FrameLog, abandoned, read_segment
from camfleet.controller.frames.store import LocalFrameStore, frame_key

T0 = 1_790_000_000_123  # 2026-09-21 14:13:20.123 UTC


def _keys(n: int, session: int = 1) -> list[str]:
    return [frame_key("cam", session, seq, T0 + seq, "image/jpeg") for seq in range(n)]


def _open_into(directory: Path) -> list[str]:
    """Descriptors of this process that point at ``directory`` or anything under it."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target == str(directory) or target.startswith(f"{directory}/"):
            out.append(target)
    return out


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_keys_keep_the_documented_browsable_layout() -> None:
    """docs: ``frames/{device}/{YYYY-MM-DD}/{HHMMSS}_{session}-{seq}[_{incarnation}][_c{16 hex
    of the SHA-256}].{ext}`` from the capture time in UTC. Catches a wrong second (ms divided
    by something else), a longer or shorter conflict tag, an unknown type not stored as .bin."""
    assert frame_key("cam", 3, 7, T0, "image/jpeg") == "frames/cam/2026-09-21/141320_3-7.jpg"
    assert frame_key("cam", 3, 7, T0 + 876, "image/png") == "frames/cam/2026-09-21/141320_3-7.png"
    assert frame_key("cam", 3, 7, T0 + 877, "image/webp").endswith("/141321_3-7.webp")
    assert frame_key("cam", 1, 1, T0, "video/x") == "frames/cam/2026-09-21/141320_1-1.bin"
    assert frame_key("cam", 1, 1, T0, "image/jpeg", b"\xab\xcd", bytes(range(32))) == (
        "frames/cam/2026-09-21/141320_1-1_abcd_c0001020304050607.jpg"
    )
    assert frame_key("cam", 1, 1, -5, "image/jpeg") == "frames/cam/1970-01-01/000000_1-1.jpg"


_DESCRIPTOR_ZERO = r"""
import os, sys
from pathlib import Path
from camfleet.controller.frames.log import FrameLog, abandoned, read_segment
base = Path(sys.argv[1])
# 1. The lock gets descriptor 0 (stdin closed): close_and_remove must still release it.
os.close(0)
log = FrameLog(base / "a", segment_bytes=1 << 16)
assert log._lock == 0, log._lock
log.append([("k/1.jpg", b"one")])
log.close_and_remove()
try:
    os.fstat(0)
    raise SystemExit("descriptor 0 (the lock) left open")
except OSError:
    pass
assert [d.name for d, _ in abandoned(base / "a")] == [log.dir.name]
# 2. A segment gets descriptor 0: it is appended to, sealed, closed and deleted like any other.
hold = os.open("/dev/null", os.O_RDONLY)  # descriptor 0 while the lock is opened
assert hold == 0
log = FrameLog(base / "b", segment_bytes=16384)
os.close(hold)
assert log.append([("k/1.jpg", b"one")])[0] == 1
os.fstat(0)
assert log.append([("k/2.jpg", b"two")])[0] == 1, "a segment on descriptor 0 was left early"
assert log.segments() == [1]
try:
    log.delete(1)
    raise SystemExit("the segment being written was deleted")
except ValueError:
    pass
log.append([("k/3.jpg", b"x" * 20000)])  # fills segment 1: the next append seals it
assert log.append([("k/4.jpg", b"four")])[0] == 2
assert log.segments() == [1, 2]
log.delete(1)
assert log.segments() == [2]
log.close()
try:
    os.fstat(0)
    raise SystemExit("descriptor 0 (a segment) left open by close")
except OSError:
    pass
assert log.current == 3
assert [k for k, _ in read_segment(log.path(2))] == ["k/4.jpg"]
print("ok")
"""


def test_descriptor_zero_is_a_descriptor_like_any_other(tmp_path: Path) -> None:
    """A controller started with stdin closed (``<&-``) gets descriptor 0 for its lock or a
    segment. Catches tests of ``fd > 0`` where ``fd >= 0`` is meant: the lock never released
    (the log never replayed), the segment rotated on every append, the open segment deletable,
    a segment left open (or reopened with O_EXCL) at rotation and close."""
    out = subprocess.run(
        [sys.executable, "-c", _DESCRIPTOR_ZERO, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_short_reads_are_resumed_and_a_cut_record_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pread`` may return less than asked (a signal, FUSE, NFS). Catches a read loop that
    stops early, asks for the wrong remainder or offset, or treats a record cut short (the
    segment truncated) as complete."""
    log = FrameLog(tmp_path / "log", segment_bytes=1 << 20)
    data = bytes(range(256)) * 40
    segment, offsets = log.append([("frames/cam/d/a.jpg", data)])
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: real(fd, min(n, 1000), off))
    assert log.read(segment, offsets[0], len(data)) == data
    log.close()
    os.truncate(log.path(segment), offsets[0] + 5000)
    with pytest.raises(OSError, match="cut short"):
        log.read(segment, offsets[0], len(data))


def test_replay_reads_a_segment_ending_exactly_after_a_record_and_skips_stray_files(
    tmp_path: Path,
) -> None:
    """A segment copied without its preallocated tail ends right after its last record: that
    record is whole and replayed. A stray file named like a segment but not numbered is not a
    segment (and no crash). Catches ``stop >= end`` and ``and`` turned into ``or`` in the
    segment-name test."""
    log = FrameLog(tmp_path / "log", segment_bytes=1 << 20)
    records = [("frames/cam/d/a.jpg", b"a" * 100), ("frames/cam/d/b.jpg", b"b" * 50)]
    segment, offsets = log.append(records)
    log.close()
    path = log.path(segment)
    os.truncate(path, offsets[1] + 50)
    assert list(read_segment(path)) == records
    (log.dir / "notes.seg").write_text("not a segment")
    (log.dir / "000000000009").write_text("no suffix")
    assert log.segments() == [segment]


def test_close_and_remove_closes_every_descriptor_and_hands_the_log_over(
    tmp_path: Path,
) -> None:
    """Catches ``close_and_remove`` (and ``close``) leaving the current segment or the lock
    open: a descriptor per restart of the store, and a log no one else can replay while the
    process lives."""
    log = FrameLog(tmp_path / "log", segment_bytes=1 << 20)
    log.append([("frames/cam/d/a.jpg", b"a" * 100)])
    assert _open_into(log.dir)
    log.close_and_remove()
    assert _open_into(log.dir) == []
    # Records are left: the directory stays, for whoever replays it (the lock is free).
    assert [(d.name, [p.name for p in s]) for d, s in abandoned(tmp_path / "log")] == [
        (log.dir.name, [log.path(1).name])
    ]
    assert not log.dir.exists()  # handed over and replayed: removed by abandoned()


def test_a_batch_whose_commit_failed_is_not_counted_against_its_segment(tmp_path: Path) -> None:
    """A batch is put down, its index commit fails, the next batch goes into the same segment.
    Catches the failed batch still counted as waiting for files (the segment is never deleted:
    disk leaks), or counted off twice (the segment is deleted while 44 of the next batch's
    300 frames have no file yet: they are lost, and the file writer retries for ever)."""
    store = LocalFrameStore(tmp_path, segment_bytes=256 * 1024)
    store.idle_s = 3600.0
    failed = [(k, b"f" * 500) for k in _keys(300, session=1)]
    store.put_batch(failed)  # no committed(): the index transaction failed
    good = [(k, bytes([i % 251]) * 500) for i, k in enumerate(_keys(300, session=2))]
    store.put_batch(good)
    store.committed()
    assert store.log.segments() == [1]
    store.put_batch([(_keys(1, session=3)[0], b"x")])  # segment 1 is full: this seals it
    store.committed()
    assert store.flush(30), "the file writer could not finish (a segment went too early?)"
    for key, data in good:
        assert (tmp_path / key).read_bytes() == data
    assert not any((tmp_path / k).exists() for k, _ in failed)
    assert store.log.segments() == [2], "segment 1 must go once its files are durable"
    store.close()


def _wait(predicate: Any, timeout: float = 30.0) -> bool:
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not done.is_set():
            if predicate():
                return True
            done.wait(0.01)
        return bool(predicate())
    finally:
        deadline.cancel()


def test_files_appear_in_the_quiet_time_at_low_priority_and_release_everything(
    tmp_path: Path,
) -> None:
    """Without any flush: the file writer wakes for each committed batch once ingest is quiet.
    Catches a commit that does not wake it (the second batch's files never appear), the file
    thread running at normal priority (it must yield the CPU to ingest), a written frame still
    reported pending (``path()`` None, the frame_files_pending gauge stuck), and a descriptor
    left open by reading the log, writing a file or syncing (one per pass)."""
    store = LocalFrameStore(tmp_path / "store")
    store.idle_s = 0.0
    first, second = _keys(2)
    store.put_batch([(first, b"one")])
    store.committed()
    assert _wait(lambda: (tmp_path / "store" / first).exists())
    assert store._thread is not None and store._thread.native_id is not None
    assert os.getpriority(os.PRIO_PROCESS, store._thread.native_id) == 19
    store.put_batch([(second, b"two")])
    store.committed()
    assert _wait(lambda: (tmp_path / "store" / second).exists())
    assert _wait(lambda: store.pending() == 0)
    assert store.path(second) == tmp_path / "store" / second
    assert store.get(second) == b"two"
    assert [t for t in _open_into(tmp_path / "store") if "/frame-log/" not in t] == []
    assert all(t.endswith((".seg", "owner.lock")) for t in _open_into(tmp_path / "store"))
    store.close()
    assert _open_into(tmp_path / "store") == []
    assert not store._thread or not store._thread.is_alive()


def _store_with_held_file_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[LocalFrameStore, threading.Event]:
    """A store (backlog limit 10,000 bytes, no quiet-time writes) whose file writer waits for
    the returned gate before each pass."""
    store = LocalFrameStore(tmp_path, max_pending_bytes=10_000)
    store.idle_s = 3600.0
    gate = threading.Event()
    real = store._write_files

    def held(items: Any) -> None:
        assert gate.wait(30)
        real(items)

    monkeypatch.setattr(store, "_write_files", held)
    return store, gate


def test_put_batch_waits_while_the_files_are_too_far_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backpressure: more committed bytes waiting for files than ``max_pending_bytes`` makes
    the next ``put_batch`` wait until the file writer catches up. Catches the wait skipped (the
    backlog, and the memory and frame log behind it, unbounded), and the backlog counted wrong
    (up on commit, down once written: otherwise it blocks for ever or never)."""
    store, gate = _store_with_held_file_writes(tmp_path, monkeypatch)
    keys = _keys(40)
    for round_ in range(3):  # each round: over the limit, then drained (counted back down)
        gate.clear()
        store.put_batch([(keys[round_ * 2], b"a" * 12_000)])
        store.committed()
        returned = threading.Event()

        def put(key: str = keys[round_ * 2 + 1], returned: threading.Event = returned) -> None:
            store.put_batch([(key, b"b")])
            returned.set()

        later = threading.Thread(target=put)
        later.start()
        assert not returned.wait(0.3), "put_batch did not wait for the files to catch up"
        gate.set()
        assert returned.wait(30)
        later.join()
        store.committed()
        assert store.flush(30)
    store.close()


def test_a_backlog_of_exactly_the_limit_does_not_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``max_pending_bytes`` is the most that may wait for files: exactly that much does not
    hold ingest up. Catches the limit counted as exclusive (``>=``)."""
    store, gate = _store_with_held_file_writes(tmp_path, monkeypatch)
    first, second = _keys(2)
    try:
        store.put_batch([(first, b"a" * 10_000)])
        store.committed()
        returned = threading.Event()
        later = threading.Thread(target=lambda: (store.put_batch([(second, b"b")]), returned.set()))
        later.start()
        assert returned.wait(30), "put_batch waited with exactly max_pending_bytes pending"
    finally:
        gate.set()
    later.join()
    store.committed()
    assert store.flush(30)
    store.close()


def test_a_key_that_is_not_a_plain_relative_path_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """Keys become paths under the store: one that climbs out (``..``), is absolute or has
    empty parts is refused with ValueError, and the batch is not put down. Catches the check
    skipped by ``put_batch`` (a bad key would be written outside the store by the file
    writer)."""
    store = LocalFrameStore(tmp_path / "store")
    for bad in ("../escape.jpg", "/etc/x.jpg", "frames//x.jpg", "frames/./x.jpg"):
        with pytest.raises(ValueError, match="plain relative path"):
            store.put_batch([(_keys(1)[0], b"ok"), (bad, b"bad")])
    assert store.log.segments() == []
    store.close()


def test_a_frame_deleted_before_its_file_and_stored_again_gets_its_file(tmp_path: Path) -> None:
    """Retention deletes a frame whose file is not written yet (its file must not appear);
    later the same key is stored again (the device sent it once more). Catches the first
    deletion remembered for ever: the second copy's file would be dropped too, a frame in the
    index without its file."""
    store = LocalFrameStore(tmp_path)
    store.idle_s = 3600.0
    key = _keys(1)[0]
    store.put_batch([(key, b"first")])
    store.committed()
    store.delete(key)
    assert store.flush(30)
    assert not (tmp_path / key).exists()
    store.put_batch([(key, b"again")])
    store.committed()
    assert store.flush(30)
    assert (tmp_path / key).read_bytes() == b"again"
    store.close()


def test_a_frame_deleted_while_its_file_is_being_written_does_not_reappear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention deletes a frame while the file writer is in the middle of writing it. Catches
    the file left behind once the pass ends (a deleted frame back on disk, never deleted
    again: the index no longer has it)."""
    store = LocalFrameStore(tmp_path)
    store.idle_s = 3600.0
    kept, dropped = _keys(2)
    real = store._write_files

    def retention_meanwhile(items: Any) -> None:
        store.delete(dropped)
        real(items)

    monkeypatch.setattr(store, "_write_files", retention_meanwhile)
    store.put_batch([(kept, b"kept"), (dropped, b"dropped")])
    store.committed()
    assert store.flush(30)
    assert (tmp_path / kept).read_bytes() == b"kept"
    assert not (tmp_path / dropped).exists()
    store.close()


def test_deleting_a_written_frame_removes_its_file(tmp_path: Path) -> None:
    """Catches ``delete`` forgetting the file once it is written (retention would free
    nothing)."""
    store = LocalFrameStore(tmp_path)
    key = _keys(1)[0]
    store.put_batch([(key, b"x")])
    store.committed()
    assert store.flush(30)
    assert (tmp_path / key).exists()
    store.delete(key)
    assert not (tmp_path / key).exists()
    store.delete(key)  # already gone: not an error
    store.close()


def test_a_segment_filled_exactly_is_sealed_and_not_grown(tmp_path: Path) -> None:
    """A batch that ends exactly at the end of the preallocated segment: the segment keeps its
    size and the next batch opens a new one. Catches ``>`` for ``>=`` in either test (the full
    segment taking one more batch past its preallocation, or its preallocation doubled for
    nothing)."""
    probe = FrameLog(tmp_path / "probe", segment_bytes=1 << 20)
    probe.append([("k", b"x")])
    direct = probe._direct  # O_DIRECT pads each batch to 4 KiB with a 14-byte filler record
    probe.close_and_remove()
    log = FrameLog(tmp_path / "log", segment_bytes=4096)
    key = "frames/cam/d/a.jpg"
    record = 4096 - 14 if direct else 4096
    log.append([(key, b"a" * (record - 14 - len(key)))])
    assert log.append([(key, b"b")])[0] == 2
    assert log.path(1).stat().st_size == 4096
    log.close()


def _refuse_o_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """The filesystem refuses O_DIRECT as tmpfs does: the file is created, then EINVAL."""
    real = os.open

    def open_(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if flags & getattr(os, "O_DIRECT", 0):
            os.close(real(path, flags & ~os.O_DIRECT, *args, **kw))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", open_)


@pytest.mark.parametrize("path", ["as the filesystem allows", "buffered"])
def test_segments_are_preallocated_and_grow_by_doubling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None, path: str
) -> None:
    """A new segment is preallocated whole (appends then allocate nothing); a batch larger
    than what is left doubles it. On the buffered path (no O_DIRECT) records follow each other
    without filler. Catches the preallocation dropped or off by one byte, growth that does not
    double (or does not happen), the buffered path taken for O_DIRECT (padding every batch to
    4 KiB), and a segment created there with another mode than 0644."""
    if path == "buffered":
        _refuse_o_direct(monkeypatch)
    log = FrameLog(tmp_path / "log", segment_bytes=64 * 1024)
    first = log.append([("frames/cam/d/a.jpg", b"a" * 100)])
    st = log.path(1).stat()
    assert st.st_size == 64 * 1024 and st.st_blocks * 512 >= 64 * 1024
    assert st.st_mode & 0o777 == 0o644
    second = log.append([("frames/cam/d/b.jpg", b"b" * 70_000)])
    assert second[0] == 1
    assert log.path(1).stat().st_size == 128 * 1024
    if path == "buffered":
        assert not log._direct
        assert second[1][0] == first[1][0] + 100 + 14 + len("frames/cam/d/b.jpg")
    assert [k for k, _ in read_segment(log.path(1))] == ["frames/cam/d/a.jpg", "frames/cam/d/b.jpg"]
    log.close()


def test_a_segment_is_kept_until_its_very_last_file_is_written(tmp_path: Path) -> None:
    """257 frames in a sealed segment: the first pass of the file writer writes 256, one is
    left. Catches the segment deleted while one record still waits for its file (that frame's
    bytes gone: the file writer retries for ever, flush never ends)."""
    store = LocalFrameStore(tmp_path, segment_bytes=64 * 1024)
    store.idle_s = 3600.0
    items = [(k, bytes([i % 251]) * 300) for i, k in enumerate(_keys(257))]
    store.put_batch(items)
    store.committed()
    store.put_batch([(_keys(1, session=2)[0], b"next")])  # seals segment 1
    store.committed()
    assert store.log.segments() == [1, 2]
    assert store.flush(30), "the file writer could not finish (a segment went too early?)"
    for key, data in items:
        assert (tmp_path / key).read_bytes() == data
    assert store.log.segments() == [2]
    store.close()


def test_a_failed_file_pass_is_retried_and_flush_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt to write the files fails (EIO on rename). Catches the failed pass's
    frames dropped instead of queued again (their files never written, their segment kept for
    ever), and flush returning before the retry wrote them."""
    store = LocalFrameStore(tmp_path)
    store.idle_s = 3600.0
    real, failures = os.replace, [0]

    def replace(src: Any, dst: Any) -> None:
        if failures[0] == 0:
            failures[0] += 1
            raise OSError(errno.EIO, "injected")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    items = [(k, k.encode()) for k in _keys(3)]
    store.put_batch(items)
    store.committed()
    assert store.flush(30)
    assert failures == [1]
    for key, data in items:
        assert (tmp_path / key).read_bytes() == data
    store.close()


def test_files_and_segments_are_readable_not_executable(tmp_path: Path, umask_022: None) -> None:
    """Frame files are served by any web server and segments read by the replay of another
    controller user: mode 0644 (under the usual umask 022). Catches any other mode."""
    store = LocalFrameStore(tmp_path, threads=2)
    items = [(k, b"x") for k in _keys(6)]
    store.put_batch(items)
    store.committed()
    assert store.log.path(1).stat().st_mode & 0o777 == 0o644
    assert (store.log.dir / "owner.lock").stat().st_mode & 0o777 == 0o644
    assert store.flush(30)
    for key, _ in items:  # six files: written through the thread pool (threads=2)
        assert (tmp_path / key).stat().st_mode & 0o777 == 0o644
        assert (tmp_path / key).read_bytes() == b"x"
    store.close()


def test_without_syncfs_each_file_and_each_directory_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the C library has no ``syncfs`` (or it fails) each file is fsynced before its
    rename and each directory after. Catches either sync dropped on that path."""
    store = LocalFrameStore(tmp_path)
    store._syncfs = None
    store.idle_s = 3600.0
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}").removeprefix(f"{tmp_path}/"))
        real(fd)

    keys = [frame_key("cam", 1, 1, T0, "image/jpeg"), frame_key("cam", 1, 2, T0 + 86_400_000, "")]
    store.put_batch([(k, b"x") for k in keys])
    store.committed()
    monkeypatch.setattr(os, "fsync", fsync)
    assert store.flush(30)
    assert sorted(synced) == sorted(
        [
            *(f"{k.rpartition('/')[0]}/.{k.rpartition('/')[2]}.{os.getpid()}.tmp" for k in keys),
            *(k.rpartition("/")[0] for k in keys),
        ]
    )
    store.close()


def test_close_writes_everything_stops_its_thread_and_leaves_no_segment(tmp_path: Path) -> None:
    """Catches a close that leaves the file thread running (it waits for work for ever: a
    thread outliving its store), does not wait for it, or leaves the written segments
    behind."""
    store = LocalFrameStore(tmp_path, segment_bytes=4096)
    store.idle_s = 3600.0
    keys = _keys(3)
    for key in keys:  # one segment each (each fills its segment)
        store.put_batch([(key, b"z" * 5000)])
        store.committed()
    assert store._thread is not None
    store.close()
    assert not store._thread.is_alive()
    for key in keys:
        assert (tmp_path / key).read_bytes() == b"z" * 5000
    assert list((tmp_path / "frame-log").iterdir()) == []


_EXIT_WITHOUT_CLOSE = r"""
import sys
from pathlib import Path
from camfleet.controller.frames.store import LocalFrameStore, frame_key
from camfleet.controller.ingest.writer import Writer
from camfleet.controller.metrics import Metrics
from camfleet.controller.storage.migrations import migrate
from camfleet.controller.storage.sqlite import SqliteDatabase
store = LocalFrameStore(Path(sys.argv[1]))
store.put_batch([(frame_key("cam", 1, 1, 1_790_000_000_000, "image/jpeg"), b"x")])
store.committed()  # the file thread runs from here
db = SqliteDatabase(Path(sys.argv[1]) / "r.sqlite3")
migrate(db)
Writer(db, store, {}, lambda r: None, Metrics()).start()
raise SystemExit(0)  # an error path that never closes them
"""


def test_a_process_that_never_closes_its_store_or_writer_still_exits(tmp_path: Path) -> None:
    """Catches the file thread or the writer thread made non-daemon: a controller that fails
    on its way out without closing them would hang instead of exiting (and being restarted).
    The frame log it leaves is replayed by the next start."""
    proc = subprocess.run(
        [sys.executable, "-c", _EXIT_WITHOUT_CLOSE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = LocalFrameStore(tmp_path)
    key = frame_key("cam", 1, 1, 1_790_000_000_000, "image/jpeg")
    assert again.recover(lambda keys: {k: hashlib.sha256(b"x").hexdigest() for k in keys}) == 1
    assert (tmp_path / key).read_bytes() == b"x"
    again.close()
