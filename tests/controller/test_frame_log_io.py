"""The frame log's write paths on their own: O_DIRECT and buffered (filesystems that refuse
O_DIRECT, such as tmpfs), short writes, more buffers than one pwritev takes, segment rotation,
preallocation growth, and the syncs that make each step survive a crash."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from camfleet.controller.frames.log import FrameLog, abandoned, read_segment


def _points_into(fd: int, directory: Path) -> bool:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return target.startswith(str(directory)) and target.endswith(".seg")


def _records(n: int, size: int, tag: str) -> list[tuple[str, bytes]]:
    return [(f"frames/cam/d/{tag}_{i}.jpg", bytes([i % 251]) * (size + i % 7)) for i in range(n)]


@pytest.fixture(params=["direct", "buffered"])
def io_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Short writes on either path (at most 3000 bytes a call, 8 KiB with O_DIRECT, whose writes
    stay block-aligned; the kernel may write less than asked either way); on the
    buffered path the filesystem refuses O_DIRECT like tmpfs does (EINVAL, after creating the
    file). Returns the calls seen on segment files, in order."""
    seen: list[str] = []
    real_open, real_pwrite, real_pwritev = os.open, os.pwrite, os.pwritev
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def is_segment(fd: int) -> bool:
        return os.readlink(f"/proc/self/fd/{fd}").endswith(".seg")

    def open_(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if request.param == "buffered" and flags & getattr(os, "O_DIRECT", 0):
            real_open(path, flags & ~os.O_DIRECT, *args, **kw)  # created, then refused
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kw)

    def pwrite(fd: int, data: Any, offset: int) -> int:
        seen.append("write")
        return real_pwrite(fd, memoryview(data)[:8192], offset)

    def pwritev(fd: int, buffers: list[Any], offset: int) -> int:
        seen.append("write")
        assert len(buffers) <= 1024, "more buffers than IOV_MAX in one call"
        out, room = [], 3000
        for b in buffers:
            if room <= 0:
                break
            out.append(memoryview(b)[:room])
            room -= len(out[-1])
        return real_pwritev(fd, out, offset)

    def fsync(fd: int) -> None:
        if is_segment(fd):
            seen.append("fsync-segment")
        else:  # the base directory ("log") holding each process's log directory, or one of those
            seen.append(
                "fsync-base" if os.readlink(f"/proc/self/fd/{fd}").endswith("/log") else "fsync-dir"
            )
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        seen.append("fdatasync")
        real_fdatasync(fd)

    for name, fn in [
        ("open", open_),
        ("pwrite", pwrite),
        ("pwritev", pwritev),
        ("fsync", fsync),
        ("fdatasync", fdatasync),
    ]:
        monkeypatch.setattr(os, name, fn)
    return seen


def test_short_writes_and_many_buffers_still_lay_down_whole_records(
    tmp_path: Path, io_path: list[str]
) -> None:
    """Catches a write loop that stops after a short write or loses its place in the buffers,
    a pwritev given more than IOV_MAX buffers, an fdatasync before the write (or none), and a
    fallback to buffered writes that leaves the refused file behind or keeps O_DIRECT's padding
    assumptions."""
    log = FrameLog(tmp_path / "log", segment_bytes=1 << 20)
    first = _records(700, 20, "a")  # 1,400 buffers: more than one pwritev may take
    segment, offsets = log.append(first)
    assert io_path.count("fdatasync") == 1 and io_path[-1] == "fdatasync"
    # the log's directory name, then the new segment and its name, are synced before any record
    assert io_path[:4] == ["fsync-base", "fsync-segment", "fsync-dir", "write"], io_path[:6]
    second = _records(3, 9000, "b")
    _, offsets2 = log.append(second)
    assert [log.read(segment, o, len(d)) for o, (_, d) in zip(offsets, first, strict=True)] == [
        d for _, d in first
    ]
    assert [log.read(segment, o, len(d)) for o, (_, d) in zip(offsets2, second, strict=True)] == [
        d for _, d in second
    ]
    log.close()
    assert list(read_segment(log.path(segment))) == first + second
    assert sorted(p.name for p in log.dir.iterdir()) == ["000000000001.seg", "owner.lock"]


def test_rotation_and_preallocation_growth(tmp_path: Path, io_path: list[str]) -> None:
    """Catches a segment that is not rotated when full, a rotation that reuses a number or keeps
    the old segment's descriptor open, a batch larger than a segment that overruns its
    preallocation, and a new segment whose file or name is not synced before records go in."""
    log = FrameLog(tmp_path / "log", segment_bytes=64 * 1024)
    small = _records(2, 1000, "s")
    big = _records(1, 200_000, "big")  # more than the whole segment
    after = _records(2, 1000, "t")
    s1, _ = log.append(small)
    s1b, _ = log.append(big)  # still room left: same segment, which must grow
    s2, _ = log.append(after)  # now full: the next one
    assert (s1, s1b, s2) == (1, 1, 2)
    assert log.segments() == [1, 2]
    open_segments = [fd for fd in os.listdir("/proc/self/fd") if _points_into(int(fd), log.dir)]
    assert len(open_segments) == 1  # the sealed segment's descriptor was closed
    assert list(read_segment(log.path(1))) == small + big
    assert list(read_segment(log.path(2))) == after
    second_open = len(io_path) - 1 - io_path[::-1].index("fsync-segment")
    assert io_path[second_open : second_open + 2] == ["fsync-segment", "fsync-dir"]
    assert io_path[second_open + 2] == "write"
    with pytest.raises(ValueError, match="still being written"):
        log.delete(2)
    log.delete(1)
    assert log.segments() == [2]
    log.close_and_remove()
    assert log.dir.exists()  # segment 2 is not replayed yet: the directory stays
    assert [d for d, _ in abandoned(tmp_path / "log")] == [log.dir]
    assert not log.dir.exists()  # handed over, then removed


def test_an_empty_log_leaves_nothing_behind(tmp_path: Path) -> None:
    log = FrameLog(tmp_path / "log")
    other = FrameLog(tmp_path / "log")  # a live controller on the same data directory
    assert list(abandoned(tmp_path / "log")) == []  # both locked: neither is replayed
    log.close_and_remove()
    assert not log.dir.exists()
    log.close_and_remove()  # twice is harmless
    assert [p.name for p in (tmp_path / "log").iterdir()] == [other.dir.name]
    other.close_and_remove()
