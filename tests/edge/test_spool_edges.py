"""The edge spool at its edges: exact byte bound, per-session queries, misplaced and repeated
corrupt files, and the clean-up of interrupted writes being synced."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from camfleet.edge.spool import CorruptFrame, Spool, SpoolKey
from camfleet.proto import codec
from camfleet.proto.receipts import make_receipt


def frame(session: int, seq: int, size: int = 100) -> Any:
    return codec.make_frame(bytes([seq % 256]) * size, session=session, seq=seq)


def test_a_spool_filled_to_exactly_its_byte_bound_drops_nothing(tmp_path: Path) -> None:
    """Catches the byte bound compared with ``>=``: a spool holding exactly max_bytes is full,
    not over."""
    size = len(codec.encode(frame(1, 1, 1000)))
    spool = Spool(tmp_path, max_frames=100, max_bytes=2 * size)
    assert spool.put(frame(1, 1, 1000)) == [] and spool.put(frame(1, 2, 1000)) == []
    assert spool.total_bytes == 2 * size
    assert spool.put(frame(1, 3, 1000)) == [SpoolKey(1, 1)]


def test_queries_per_session(tmp_path: Path) -> None:
    """Catches ``max_session`` or ``last_seq`` reading the wrong neighbour in the sorted keys
    (a restart would then reuse a seq or a session)."""
    spool = Spool(tmp_path, max_frames=100, max_bytes=10**6)
    assert (spool.max_session(), spool.last_seq(1)) == (0, 0)
    spool.put(frame(1, 5))
    spool.put(frame(2, 1))
    assert spool.max_session() == 2
    for key in [(3, 7), (3, 8)]:
        spool.put(frame(*key))
    assert spool.max_session() == 3
    assert [spool.last_seq(s) for s in (1, 2, 3, 4)] == [5, 1, 8, 0]


def test_membership_and_walking_the_spool_in_order(tmp_path: Path) -> None:
    """The sender walks the spool with ``next_after`` and prunes its send times with ``in``.
    Catches ``in`` answering the opposite, and ``next_after`` reading past the last key (an
    IndexError instead of None: the sender would fail on every pass once it reaches the end)."""
    spool = Spool(tmp_path, max_frames=100, max_bytes=10**6)
    assert spool.next_after(None) is None
    for key in [(1, 2), (1, 3), (2, 1)]:
        spool.put(frame(*key))
    assert SpoolKey(1, 3) in spool and SpoolKey(1, 4) not in spool
    walked, key = [], None
    while (key := spool.next_after(key)) is not None:
        walked.append(key)
    assert walked == [SpoolKey(1, 2), SpoolKey(1, 3), SpoolKey(2, 1)]
    assert spool.next_after(SpoolKey(1, 2)) == SpoolKey(1, 3)
    assert spool.next_after(SpoolKey(9, 9)) is None


def test_a_receipt_deletes_only_what_it_may(tmp_path: Path) -> None:
    """Catches a receipt deleting frames the sender never published (``sent`` read the other
    way round: the published ones kept, the others lost), and a receipt naming the previous
    incarnation deleting a frame of the first session of the new one (the boundary session
    taken as an earlier incarnation's)."""
    spool = Spool(tmp_path, max_frames=100, max_bytes=10**6)
    for seq in (1, 2, 3):
        spool.put(frame(4, seq))
    receipt = make_receipt([(4, 1), (4, 2), (4, 3)], 0, b"new")
    deleted = spool.apply_receipt(receipt, b"new", 4, sent=lambda key: key.seq != 2)
    assert deleted == [SpoolKey(4, 1), SpoolKey(4, 3)]
    assert spool.frame_keys() == [SpoolKey(4, 2)]
    # incarnation "new" since session 4: a receipt of "old" for (4, 2) is not about this frame
    assert spool.apply_receipt(make_receipt([(4, 2)], 0, b"old"), b"new", 4) == []
    assert spool.apply_receipt(make_receipt([(4, 2)], 0, b"new"), b"new", 4) == [SpoolKey(4, 2)]


def test_a_file_holding_another_frame_and_a_second_corrupt_file_are_quarantined(
    tmp_path: Path,
) -> None:
    """Catches a misplaced file (named for one frame, holding another) that is reported but left
    in the spool (it would be read and refused for ever), and a second quarantine failing
    because ``corrupt/`` exists."""
    spool = Spool(tmp_path, max_frames=100, max_bytes=10**6)
    for seq in (1, 2, 3):
        spool.put(frame(1, seq))
    os.replace(tmp_path / SpoolKey(1, 3).filename, tmp_path / SpoolKey(1, 2).filename)
    reopened = Spool(tmp_path, max_frames=100, max_bytes=10**6)
    with pytest.raises(CorruptFrame, match="holds frame 1-3"):
        reopened.read(SpoolKey(1, 2))
    (tmp_path / SpoolKey(1, 1).filename).write_bytes(b"not a frame")
    with pytest.raises(CorruptFrame, match="1-1"):
        reopened.read(SpoolKey(1, 1))
    assert reopened.frame_keys() == []
    assert sorted(p.name for p in (tmp_path / "corrupt").iterdir()) == [
        SpoolKey(1, 1).filename,
        SpoolKey(1, 2).filename,
    ]


def test_removing_interrupted_writes_is_synced_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches the clean-up of temporary files at start not being synced, or miscounted."""
    Spool(tmp_path, max_frames=100, max_bytes=10**6).put(frame(1, 1))
    (tmp_path / ".tmp-0000000001-0000000002.frame").write_bytes(b"half")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    reopened = Spool(tmp_path, max_frames=100, max_bytes=10**6)
    assert reopened.removed_temp_files == 1
    assert synced == [str(tmp_path)]
    assert reopened.frame_keys() == [(1, 1)] and reopened.depth == 1
