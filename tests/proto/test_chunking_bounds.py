"""Chunking at its edges: the size limit is inclusive, chunks are as full as the limit allows,
and a header that leaves no room for data is refused exactly where it stops fitting."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import pytest

from camfleet.proto import codec
from camfleet.proto.chunking import MIN_MAX_PAYLOAD, Reassembler, needs_chunking, split_frame
from camfleet.proto.errors import ContractError, Reason
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import frame_pb2
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


@pytest.mark.parametrize("max_payload", [MIN_MAX_PAYLOAD, 1500, 4096])
def test_chunks_of_a_frame_over_2_mib_still_fit(max_payload: int) -> None:
    """A 3 MB frame (a 5-megapixel JPEG) at small limits: offsets and total_size take 4-byte
    varints, counts and indexes 2, so the worst-case estimate has almost no slack left.
    Catches the estimate of data's own tag and length (6 bytes) taken off instead of added:
    chunks one byte over the broker's limit."""
    frame = sample_frame(os.urandom(3_000_000), session=70_000, seq=2**31)
    chunks = split_frame(frame, max_payload)
    assert max(len(codec.encode(c)) for c in chunks) <= max_payload
    assert b"".join(c.data for c in chunks) == frame.data


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


def _wire(chunk: frame_pb2.FrameChunk) -> frame_pb2.FrameChunk:
    decoded = codec.decode(Kind.CHUNK, codec.encode(chunk)).message
    assert isinstance(decoded, frame_pb2.FrameChunk)
    return decoded


def test_counters_start_at_zero() -> None:
    assert dataclasses.asdict(Reassembler().stats) == {
        "completed": 0,
        "duplicates": 0,
        "expired": 0,
        "evicted_device": 0,
        "evicted_memory": 0,
        "mismatched": 0,
        "checksum_failed": 0,
        "pending_frames": 0,
        "pending_bytes": 0,
    }


def _pending(reassembler: Reassembler) -> list[tuple[int, int]]:
    """(session, seq) of the frames waiting for chunks, oldest first."""
    return [(k[-2], k[-1]) for k in reassembler.pending()]


@pytest.mark.parametrize("edge", ["starts_in_last_byte", "ends_in_first_byte"])
def test_a_chunk_overlapping_another_by_one_byte_is_refused_once(edge: str) -> None:
    """Catches the overlap test moved by one at either end (``<=``) or computing the other
    chunk's end wrongly (``offset - length``): a forged chunk sharing one byte with a received
    one would overwrite it. Chunks that only touch (the normal case) are not overlaps."""
    frame = sample_frame(os.urandom(6000))
    chunks = split_frame(frame, 2048)
    reassembler = Reassembler()
    reassembler.add("cam-1", _wire(chunks[1]))
    forged = frame_pb2.FrameChunk()
    forged.CopyFrom(chunks[2])
    forged.index = len(chunks) - 1
    forged.data = forged.data[:10]
    one = chunks[1]
    if edge == "starts_in_last_byte":
        forged.offset = one.offset + len(one.data) - 1
    else:
        forged.offset = one.offset - len(forged.data) + 1
    with pytest.raises(ContractError) as info:
        reassembler.add("cam-1", _wire(forged))
    assert info.value.reason is Reason.CHUNK_MISMATCH
    assert reassembler.stats.mismatched == 1
    results = [reassembler.add("cam-1", _wire(c)) for c in chunks if c.index != 1]
    assert results[-1] == frame


def test_a_chunk_disagreeing_on_the_frame_is_counted_once() -> None:
    chunks = split_frame(sample_frame(os.urandom(6000)), 2048)
    reassembler = Reassembler()
    reassembler.add("cam-1", _wire(chunks[0]))
    liar = frame_pb2.FrameChunk()
    liar.CopyFrom(chunks[1])
    liar.count += 1
    with pytest.raises(ContractError):
        reassembler.add("cam-1", _wire(liar))
    assert reassembler.stats.mismatched == 1


def test_adding_a_chunk_expires_frames_that_waited_too_long() -> None:
    """Catches ``add`` no longer expiring on its own: a receiver that only calls ``add`` would
    hold incomplete frames (and their memory) for ever."""
    now = [1000.0]
    reassembler = Reassembler(timeout_s=30, clock=lambda: now[0])
    old = split_frame(sample_frame(os.urandom(6000), seq=1), 2048)
    reassembler.add("cam-1", _wire(old[0]))
    now[0] += 31
    reassembler.add("cam-1", _wire(split_frame(sample_frame(os.urandom(6000), seq=2), 2048)[0]))
    assert reassembler.pending() == [("cam-1", b"", 7, 2)]
    assert reassembler.stats.expired == 1


def test_frame_and_memory_limits_are_inclusive() -> None:
    """Catches ``>=`` for ``>`` in the per-frame limit and in the eviction test: a frame of
    exactly ``max_frame_bytes``, and partial frames filling exactly ``max_bytes``, are kept."""
    exact = sample_frame(os.urandom(10_000), seq=1)
    reassembler = Reassembler(max_frame_bytes=10_000)
    assert [reassembler.add("cam-1", _wire(c)) for c in split_frame(exact, 2048)][-1] == exact
    over = split_frame(sample_frame(os.urandom(10_001), seq=2), 2048)[0]
    with pytest.raises(ContractError) as info:
        reassembler.add("cam-1", _wire(over))
    assert "cam-1 7-2: frame of 10001 bytes exceeds the reassembly limit 10000" in str(info.value)
    # Memory counts the bytes received: pieces filling exactly max_bytes are all kept.
    pieces = [split_frame(sample_frame(os.urandom(10_000), seq=s), 2048)[1] for s in (3, 4, 5)]
    size = len(pieces[0].data)
    assert all(len(p.data) == size for p in pieces)
    reassembler = Reassembler(max_bytes=2 * size, max_bytes_per_device=2 * size)
    reassembler.add("cam-1", _wire(pieces[0]))
    reassembler.add("cam-1", _wire(pieces[1]))  # 2 x size of 2 x size: both kept
    assert reassembler.pending() == [("cam-1", b"", 7, 3), ("cam-1", b"", 7, 4)]
    assert reassembler.stats.evicted == 0
    reassembler.add("cam-1", _wire(pieces[2]))
    assert reassembler.pending() == [("cam-1", b"", 7, 4), ("cam-1", b"", 7, 5)]
    assert reassembler.stats.evicted == 1


def test_chunks_that_leave_a_gap_fail_with_the_frame_named_and_counted_once() -> None:
    """Catches the size check or its counter going wrong: two chunks that claim a 300-byte frame
    but hold 150 bytes between them never make a frame."""
    data = os.urandom(300)
    sha = hashlib.sha256(data).digest()
    header = frame_pb2.Frame(session=7, seq=1)
    parts = [
        frame_pb2.FrameChunk(session=7, seq=1, index=0, count=2, total_size=300, sha256=sha,
                             offset=0, data=data[:100], header=header),
        frame_pb2.FrameChunk(session=7, seq=1, index=1, count=2, total_size=300, sha256=sha,
                             offset=250, data=data[250:]),
    ]  # fmt: skip
    reassembler = Reassembler()
    reassembler.add("cam-1", _wire(parts[0]))
    with pytest.raises(ContractError) as info:
        reassembler.add("cam-1", _wire(parts[1]))
    assert info.value.reason is Reason.CHECKSUM_MISMATCH
    assert "cam-1 7-1: chunks hold 150 bytes, total_size says 300" in str(info.value)
    assert reassembler.stats.checksum_failed == 1 and _pending(reassembler) == []


def test_a_bad_sha256_names_the_frame() -> None:
    chunks = split_frame(sample_frame(os.urandom(3000)), 2048)
    chunks[1].data = bytes(b ^ 1 for b in chunks[1].data)
    reassembler = Reassembler()
    reassembler.add("cam-1", _wire(chunks[0]))
    with pytest.raises(ContractError) as info:
        reassembler.add("cam-1", _wire(chunks[1]))
    assert "cam-1 7-1: SHA-256 of the chunks differs" in str(info.value)


def test_completed_frames_remembered_are_the_newest_and_bounded() -> None:
    """Catches the memory of completed frames being unbounded, one short, or dropping the newest
    instead of the oldest (a late duplicate of a recent frame would start a new partial)."""
    frames = [sample_frame(os.urandom(3000), seq=s) for s in (1, 2, 3)]
    split = [split_frame(f, 2048) for f in frames]
    reassembler = Reassembler(remember_completed=2)
    for chunks in split:
        for c in chunks:
            reassembler.add("cam-1", _wire(c))
    assert reassembler.add("cam-1", _wire(split[1][1])) is None  # remembered: a duplicate
    assert reassembler.add("cam-1", _wire(split[2][1])) is None
    assert reassembler.stats.duplicates == 2 and _pending(reassembler) == []
    assert reassembler.add("cam-1", _wire(split[0][1])) is None  # forgotten: a new partial
    assert reassembler.pending() == [("cam-1", b"", 7, 1)]


def test_a_frame_expires_at_exactly_its_timeout() -> None:
    now = [1000.0]
    reassembler = Reassembler(timeout_s=30, clock=lambda: now[0])
    reassembler.add("cam-1", _wire(split_frame(sample_frame(os.urandom(3000)), 2048)[0]))
    now[0] += 29.5
    assert reassembler.expire() == []
    now[0] += 0.5
    assert reassembler.expire() == [("cam-1", b"", 7, 1)]


def test_the_count_of_incomplete_frames_is_bounded_at_exactly_max_frames() -> None:
    """Catches the bound on incomplete frames (all devices) not enforced, or enforced one frame
    late: the oldest goes (counted as a memory eviction) when a frame would be the
    (max_frames + 1)-th."""
    reassembler = Reassembler(max_frames=3)
    for n in range(1, 5):
        chunks = split_frame(sample_frame(os.urandom(5000), seq=n), 2048)
        reassembler.add(f"cam-{n}", _wire(chunks[0]))
        assert len(reassembler.pending()) == min(n, 3)
    assert [k[0] for k in reassembler.pending()] == ["cam-2", "cam-3", "cam-4"]
    assert reassembler.stats.evicted_memory == 1
    assert [(k[0], why) for k, why in reassembler.take_evicted()] == [("cam-1", "memory")]


@pytest.mark.parametrize("limit", ["device", "memory"])
def test_a_frame_given_up_for_a_byte_limit_leaves_the_limit_whole(limit: str) -> None:
    """A frame that alone outgrows its device's byte share (or the reassembler's whole byte
    limit) is given up. Catches the give-up going on with the chunk anyway (its bytes then
    counted for ever: the next frame of a normal size would be evicted too)."""
    if limit == "device":
        reassembler = Reassembler(max_bytes_per_device=10_000)
    else:
        reassembler = Reassembler(max_bytes=10_000, max_bytes_per_device=10**6)
    big = split_frame(sample_frame(os.urandom(12_000), seq=1), 4096)
    assert [reassembler.add("cam-1", _wire(c)) for c in big] == [None] * len(big)
    assert getattr(reassembler.stats, f"evicted_{limit}") == 1
    normal = split_frame(sample_frame(os.urandom(8000), seq=2), 4096)
    results = [reassembler.add("cam-1", _wire(c)) for c in normal]
    assert results[-1] is not None and results[-1].seq == 2


def test_a_completed_frame_gives_its_device_share_back() -> None:
    """One device sends frames one after the other, each well within its shares. Catches a
    completed frame still counted against its device (as an incomplete frame or as bytes):
    after a few frames every new one would be evicted, or the eviction would find nothing to
    evict."""
    reassembler = Reassembler(max_per_device=2, max_bytes_per_device=10_000)
    for seq in range(1, 6):
        chunks = split_frame(sample_frame(os.urandom(6000), seq=seq), 4096)
        results = [reassembler.add("cam-1", _wire(c)) for c in chunks]
        assert results[-1] is not None and results[-1].seq == seq
    assert reassembler.stats.evicted == 0
    assert reassembler.stats.pending_frames == 0 and reassembler.stats.pending_bytes == 0


def test_shares_are_counted_right_while_other_frames_of_the_device_are_in_flight() -> None:
    """Frames of one device interleave; one completes while another is still incomplete.
    Catches the completed frame's count or bytes taken off the wrong entry (or the whole
    device's bytes forgotten): a frame still in flight would then be evicted for nothing, or
    the device could hold more than its byte share."""
    reassembler = Reassembler(max_per_device=2, max_bytes_per_device=10**6)
    a, b, c = (split_frame(sample_frame(os.urandom(6000), seq=s), 4096) for s in (1, 2, 3))
    reassembler.add("cam-1", _wire(a[0]))
    reassembler.add("cam-1", _wire(b[0]))
    assert reassembler.add("cam-1", _wire(a[1])) is not None  # a completes, b in flight
    reassembler.add("cam-1", _wire(c[0]))  # the second frame in flight: nothing to evict
    assert reassembler.stats.evicted == 0
    assert reassembler.add("cam-1", _wire(b[1])) is not None
    assert reassembler.add("cam-1", _wire(c[1])) is not None

    reassembler = Reassembler(max_per_device=10, max_bytes_per_device=10_000)
    a, b, c, d = (split_frame(sample_frame(os.urandom(6000), seq=s), 4096) for s in range(1, 5))
    reassembler.add("cam-1", _wire(a[0]))
    reassembler.add("cam-1", _wire(b[0]))
    assert reassembler.add("cam-1", _wire(a[1])) is not None  # b's first chunk still held
    reassembler.add("cam-1", _wire(c[0]))
    assert reassembler.stats.evicted_device == 0
    reassembler.add("cam-1", _wire(d[0]))  # b + c + d's first chunks: over 10 000
    assert reassembler.stats.evicted_device == 1
    assert ("cam-1", b"", 7, 2) not in reassembler.pending()


def test_a_chunk_ending_past_the_frame_is_refused_even_undecoded() -> None:
    """The codec refuses such a chunk first, but the reassembler is a public API and checks on
    its own. Catches the check (or its count) broken: a chunk ending past total_size accepted,
    or counted other than once."""
    chunks = split_frame(sample_frame(os.urandom(6000)), 2048)
    reassembler = Reassembler()
    reassembler.add("cam-1", _wire(chunks[0]))
    past = frame_pb2.FrameChunk()
    past.CopyFrom(chunks[-1])
    past.data = past.data + b"x"  # raw, not through the codec
    with pytest.raises(ContractError) as info:
        reassembler.add("cam-1", past)
    assert info.value.reason is Reason.CHUNK_MISMATCH and "past total_size" in str(info.value)
    assert reassembler.stats.mismatched == 1
