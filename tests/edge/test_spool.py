"""The disk spool on its own: order, bounds, receipts, crash leftovers, damaged files."""

from __future__ import annotations

import pytest

from camfleet.edge.spool import CorruptFrame, Spool, SpoolKey
from camfleet.proto import codec
from camfleet.proto.receipts import make_receipt


def frame(session: int, seq: int, size: int = 100) -> object:
    return codec.make_frame(bytes([seq % 256]) * size, session=session, seq=seq)


def open_spool(path, **kw) -> Spool:
    return Spool(path, max_frames=kw.get("max_frames", 100), max_bytes=kw.get("max_bytes", 10**6))


def test_order_survives_reopen_and_keys_sort_by_session_then_seq(tmp_path):
    spool = open_spool(tmp_path)
    for key in [(2, 1), (1, 10), (1, 9), (2, 2)]:
        spool.put(frame(*key))
    reopened = open_spool(tmp_path)
    assert reopened.frame_keys() == [
        SpoolKey(1, 9),
        SpoolKey(1, 10),
        SpoolKey(2, 1),
        SpoolKey(2, 2),
    ]
    assert reopened.next_after(None) == (1, 9) and reopened.next_after(SpoolKey(1, 10)) == (2, 1)
    assert reopened.last_seq(1) == 10 and reopened.last_seq(3) == 0
    assert reopened.read(SpoolKey(2, 2)).data == frame(2, 2).data
    with pytest.raises(ValueError, match="already spooled"):
        reopened.put(frame(2, 2))


def test_bounded_by_count_and_bytes_dropping_oldest(tmp_path):
    spool = open_spool(tmp_path, max_frames=3)
    dropped = [spool.put(frame(1, s)) for s in range(1, 6)]
    assert dropped == [[], [], [], [SpoolKey(1, 1)], [SpoolKey(1, 2)]]
    assert spool.frame_keys() == [(1, 3), (1, 4), (1, 5)]
    size = len(codec.encode(frame(1, 1, 1000)))
    by_bytes = open_spool(tmp_path / "b", max_bytes=2 * size + 10)
    assert by_bytes.put(frame(1, 1, 1000)) == [] and by_bytes.put(frame(1, 2, 1000)) == []
    assert by_bytes.put(frame(1, 3, 1000)) == [SpoolKey(1, 1)]
    assert by_bytes.total_bytes == 2 * size and by_bytes.depth == 2
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "0000000001-0000000002.frame",
        "0000000001-0000000003.frame",
    ]


def test_receipt_deletes_only_what_it_covers(tmp_path):
    spool = open_spool(tmp_path)
    for s in range(1, 8):
        spool.put(frame(4, s))
    spool.put(frame(5, 1))
    deleted = spool.apply_receipt(make_receipt([(4, 2), (4, 3), (4, 4), (4, 6), (9, 1)]))
    assert deleted == [(4, 2), (4, 3), (4, 4), (4, 6)]
    assert spool.frame_keys() == [(4, 1), (4, 5), (4, 7), (5, 1)]
    assert spool.apply_receipt(make_receipt([(4, 2)])) == []  # idempotent
    assert open_spool(tmp_path).frame_keys() == spool.frame_keys()  # deletions are on disk


def test_interrupted_write_and_damaged_file(tmp_path):
    spool = open_spool(tmp_path)
    spool.put(frame(1, 1))
    spool.put(frame(1, 2))
    (tmp_path / ".tmp-0000000001-0000000003.frame").write_bytes(b"half a fr")
    damaged = tmp_path / "0000000001-0000000002.frame"
    damaged.write_bytes(damaged.read_bytes()[:-5])  # a disk that lied about fsync
    reopened = open_spool(tmp_path)
    assert reopened.removed_temp_files == 1
    assert not list(tmp_path.glob(".tmp-*"))
    assert reopened.read(SpoolKey(1, 1)).seq == 1
    with pytest.raises(CorruptFrame, match="1-2"):
        reopened.read(SpoolKey(1, 2))
    assert reopened.frame_keys() == [(1, 1)]
    assert (tmp_path / "corrupt" / "0000000001-0000000002.frame").exists()
