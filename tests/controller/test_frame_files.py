"""The browsable frame files written behind the frame log: a segment is deleted only once every
file it feeds is written and synced, however many passes that takes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from camfleet.controller.frames.store import LocalFrameStore, frame_key


def _keys(n: int, session: int) -> list[str]:
    return [
        frame_key("cam", session, seq, 1_790_000_000_000 + seq, "image/jpeg") for seq in range(n)
    ]


def test_files_are_synced_before_their_segment_goes_even_across_many_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 frames in one sealed segment need two passes of the file writer (256 a pass).
    Catches a segment deleted while some of its frames have no file yet (counted down too fast:
    those files could never be written, and a restart could not replay them either), and files
    not synced before the segment that held their bytes is deleted (or a descriptor left open
    by the sync)."""
    store = LocalFrameStore(tmp_path, segment_bytes=256 * 1024)
    store.idle_s = 3600.0  # files only when flushed: the test decides when
    events: list[str] = []
    real_sync, real_unlink = store._syncfs, os.unlink

    def syncfs(fd: int) -> int:
        events.append("sync")
        return real_sync(fd) if real_sync is not None else 0

    def unlink(path: Any, *args: Any, **kw: Any) -> None:
        if str(path).endswith(".seg"):
            events.append("delete-segment")
        real_unlink(path, *args, **kw)

    monkeypatch.setattr(store, "_syncfs", syncfs)
    monkeypatch.setattr(os, "unlink", unlink)
    first = [(k, bytes([i % 251]) * 1000) for i, k in enumerate(_keys(300, 1))]
    store.put_batch(first)
    store.committed()
    last = [(_keys(1, 2)[0], b"last")]
    store.put_batch(last)  # the first segment is full: this one opens the next, sealing it
    store.committed()
    assert store.log.segments() == [1, 2]
    assert store.flush(30), "the file writer could not finish (a segment went too early?)"
    for key, data in [*first, *last]:
        assert (tmp_path / key).read_bytes() == data
    assert "delete-segment" in events
    assert events.index("sync") < events.index("delete-segment"), events
    # and no descriptor of the sync outlives it
    leaked = [fd for fd in os.listdir("/proc/self/fd") if _target(fd) == str(tmp_path)]
    assert leaked == []
    store.close()


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
