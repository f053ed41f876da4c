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
