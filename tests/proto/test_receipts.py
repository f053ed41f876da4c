"""Receipts fold stored frames into ranges; covers() answers for one frame."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from camfleet.proto.receipts import covers, make_receipt, ranges_from


def test_consecutive_seqs_fold_into_one_range_per_session() -> None:
    ranges = ranges_from([(1, 3), (1, 1), (1, 2), (2, 1), (1, 5), (1, 5)])
    assert [(r.session, r.first_seq, r.last_seq) for r in ranges] == [
        (1, 1, 3),
        (1, 5, 5),
        (2, 1, 1),
    ]


@given(
    st.sets(st.tuples(st.integers(1, 4), st.integers(1, 40)), max_size=60),
    st.tuples(st.integers(1, 4), st.integers(1, 40)),
)
def test_covers_exactly_the_stored_frames(
    stored: set[tuple[int, int]], probe: tuple[int, int]
) -> None:
    receipt = make_receipt(stored)
    assert covers(receipt, *probe) == (probe in stored)


def test_receipts_are_split_and_ranges_name_their_incarnation() -> None:
    from camfleet.proto.receipts import MAX_RANGES, make_receipts

    stored = {b"new-inc!": [(1, seq) for seq in range(1, 200, 2)], b"": [(1, 1), (1, 2)]}
    receipts = make_receipts(stored, 7)
    ranges = [r for rc in receipts for r in rc.stored]
    assert all(len(rc.stored) <= MAX_RANGES for rc in receipts) and len(receipts) == 4
    assert len(ranges) == 101 and all(rc.timestamp_ms == 7 for rc in receipts)
    assert sum(covers(rc, 1, 3, b"new-inc!") for rc in receipts) == 1
    assert not any(covers(rc, 1, 2, b"new-inc!") for rc in receipts)  # only the old one has 1-2
    assert sum(covers(rc, 1, 2) for rc in receipts) == 1
