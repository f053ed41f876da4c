"""Receipts split to a bounded number of ranges each (devices refuse larger ones)."""

from __future__ import annotations

from camfleet.proto.receipts import covers, make_receipts


def test_many_ranges_are_split_into_receipts_of_at_most_max_ranges_covering_each_frame_once() -> (
    None
):
    """Catches a split that skips or repeats ranges at the receipt boundaries, or starts past
    the first range."""
    gappy = [(1, seq) for seq in range(1, 20, 2)]  # ten one-frame ranges
    receipts = make_receipts({b"inc-a": gappy, b"": [(2, 1), (2, 2)]}, 77, max_ranges=3)
    assert [len(r.stored) for r in receipts] == [3, 3, 3, 2]  # 1 (incarnation b"") + 10
    assert all(r.timestamp_ms == 77 for r in receipts)
    flat = [(r.incarnation, r.session, r.first_seq, r.last_seq) for x in receipts for r in x.stored]
    assert flat == [(b"", 2, 1, 2)] + [(b"inc-a", 1, s, s) for s in range(1, 20, 2)]
    for session, seq in gappy:
        assert sum(covers(r, session, seq, b"inc-a") for r in receipts) == 1
    assert not any(covers(r, 1, 2, b"inc-a") for r in receipts)
    assert make_receipts({}, 5) == []
