"""The edge spool's system calls, in order: a frame's bytes are fsynced, renamed into place and
the directory fsynced before ``put`` returns; a receipt's deletions are fsynced before
``apply_receipt`` returns. Recorded by wrapping the os functions the spool reaches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from camfleet.edge.spool import Spool, SpoolKey
from camfleet.proto import codec
from camfleet.proto.receipts import make_receipt


def _name(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(call, file name or "dir") for every write, fsync, rename and unlink under tmp_path."""
    seen: list[tuple[str, str]] = []
    root = str(tmp_path / "spool")

    def label(path: str) -> str | None:
        if not path.startswith(root):
            return None
        return "dir" if path == root else Path(path).name

    def wrap(name: str, path_of: Any) -> None:
        real = getattr(os, name)

        def recorded(*args: Any, **kw: Any) -> Any:
            what = label(path_of(*args))
            result = real(*args, **kw)
            if what is not None:
                seen.append((name, what))
            return result

        monkeypatch.setattr(os, name, recorded)

    wrap("write", lambda fd, *a: _name(fd))
    wrap("fsync", lambda fd: _name(fd))
    wrap("replace", lambda src, dst: str(dst))
    wrap("unlink", lambda path, *a, **k: str(path))
    return seen


def test_put_is_durable_when_it_returns(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    """Catches a spool that skips the file's fsync, the rename, or the directory's fsync (a
    power cut then loses a frame the agent believes spooled), or does them in another order."""
    spool = Spool(tmp_path / "spool", max_frames=10, max_bytes=10**6)
    calls.clear()
    spool.put(codec.make_frame(b"x" * 5000, session=3, seq=7))
    final = SpoolKey(3, 7).filename
    tmp = ".tmp-" + final
    assert calls[-3:] == [("fsync", tmp), ("replace", final), ("fsync", "dir")], calls
    assert set(calls[:-3]) == {("write", tmp)}, calls
    assert Spool(tmp_path / "spool", max_frames=10, max_bytes=10**6).frame_keys() == [(3, 7)]


def test_receipt_deletions_are_durable_when_it_returns(
    tmp_path: Path, calls: list[tuple[str, str]]
) -> None:
    """Catches a receipt whose deletions are not fsynced (the frames come back after a power
    cut and are sent again: harmless, but the promise is a synced spool) or deletes too much."""
    spool = Spool(tmp_path / "spool", max_frames=10, max_bytes=10**6)
    for seq in (1, 2, 3):
        spool.put(codec.make_frame(b"y" * 100, session=1, seq=seq))
    calls.clear()
    assert spool.apply_receipt(make_receipt([(1, 1), (1, 2)])) == [(1, 1), (1, 2)]
    assert calls == [
        ("unlink", SpoolKey(1, 1).filename),
        ("unlink", SpoolKey(1, 2).filename),
        ("fsync", "dir"),
    ]
    calls.clear()
    assert spool.apply_receipt(make_receipt([(2, 1)])) == []
    assert calls == []  # nothing deleted, nothing to sync


def test_dropping_the_oldest_to_make_room_is_synced_before_the_new_frame(
    tmp_path: Path, calls: list[tuple[str, str]]
) -> None:
    """Catches a full spool whose drop of the oldest frame is not synced before the new frame
    is written (after a power cut the spool would hold more than its bound)."""
    spool = Spool(tmp_path / "spool", max_frames=2, max_bytes=10**6)
    for seq in (1, 2):
        spool.put(codec.make_frame(b"z" * 100, session=1, seq=seq))
    calls.clear()
    assert spool.put(codec.make_frame(b"z" * 100, session=1, seq=3)) == [(1, 1)]
    assert calls[:2] == [("unlink", SpoolKey(1, 1).filename), ("fsync", "dir")], calls
    assert spool.frame_keys() == [(1, 2), (1, 3)]
