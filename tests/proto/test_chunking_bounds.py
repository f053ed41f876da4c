"""Chunking at its edges: the size limit is inclusive, chunks are as full as the limit allows,
and a header that leaves no room for data is refused exactly where it stops fitting."""

from __future__ import annotations

import hashlib
import os

import pytest

from camfleet.proto import codec
from camfleet.proto.chunking import MIN_MAX_PAYLOAD, needs_chunking, split_frame
from tests.proto.samples import sample_frame


def test_a_frame_exactly_at_the_limit_is_not_chunked() -> None:
    """Catches ``>=`` for ``>``: a frame of exactly max_payload bytes travels whole."""
    frame = sample_frame(os.urandom(3000))
    size = frame.ByteSize()
    assert not needs_chunking(frame, size)
    assert needs_chunking(frame, size - 1)


@pytest.mark.parametrize("max_payload", [MIN_MAX_PAYLOAD, 4096, 64 * 1024])
def test_chunks_fit_and_are_as_full_as_the_limit_allows(max_payload: int) -> None:
    """Catches chunks sized with the header's overhead after the first one (more chunks than
    needed) or with too little room, and chunks that do not add up to the frame."""
    frame = sample_frame(os.urandom(300_000), metadata={f"k{i}": "v" * 20 for i in range(8)})
    chunks = split_frame(frame, max_payload)
    sizes = [len(codec.encode(c)) for c in chunks]
    assert max(sizes) <= max_payload
    # every chunk but the last is within the worst-case varint slack of the limit
    assert min(sizes[1:-1]) >= max_payload - 32, sizes[:4]
    assert b"".join(c.data for c in chunks) == frame.data
    assert [c.offset for c in chunks] == [
        sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))
    ]
    assert {(c.count, c.total_size, c.sha256) for c in chunks} == {
        (len(chunks), len(frame.data), hashlib.sha256(frame.data).digest())
    }
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_a_header_that_leaves_no_room_is_refused_exactly_where_it_stops_fitting() -> None:
    """Catches the room check moved by one (``<=``, ``< 2``) or weakened (``and``): at the
    smallest limit that fits, the first chunk carries one byte of data; one byte less raises."""
    frame = sample_frame(os.urandom(5000), metadata={"note": "n" * 1500})
    smallest = None
    for max_payload in range(MIN_MAX_PAYLOAD, 4096):
        try:
            chunks = split_frame(frame, max_payload)
        except ValueError as exc:
            assert "no room for data" in str(exc)
            continue
        smallest = max_payload
        break
    assert smallest is not None and smallest > MIN_MAX_PAYLOAD
    assert len(chunks[0].data) == 1
    assert all(len(codec.encode(c)) <= smallest for c in chunks)
    assert b"".join(c.data for c in chunks) == frame.data
