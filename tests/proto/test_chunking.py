"""Chunking: split -> shuffle/duplicate -> reassemble gives the original, within bounds."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camfleet.proto import codec
from camfleet.proto.chunking import Reassembler, needs_chunking, split_frame
from camfleet.proto.errors import ContractError, Reason
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import frame_pb2
from tests.proto.samples import sample_frame


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wire(chunk: frame_pb2.FrameChunk) -> frame_pb2.FrameChunk:
    """What a receiver gets: the chunk encoded, carried, decoded and checked by the codec."""
    decoded = codec.decode(Kind.CHUNK, codec.encode(chunk)).message
    assert isinstance(decoded, frame_pb2.FrameChunk)
    return decoded


def test_a_frame_over_the_limit_needs_chunks_and_each_chunk_fits() -> None:
    frame = sample_frame(os.urandom(400_000), metadata={"site": "north"})
    limit = 128 * 1024
    assert needs_chunking(frame, limit)
    chunks = split_frame(frame, limit)
    assert len(chunks) == 4
    assert all(len(codec.encode(c)) <= limit for c in chunks)
    assert chunks[0].HasField("header") and not any(c.HasField("header") for c in chunks[1:])
    assert chunks[0].header.metadata["site"] == "north" and not chunks[0].header.data


def test_a_small_frame_does_not_need_chunks() -> None:
    assert not needs_chunking(sample_frame(b"x" * 1000))


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 60_000),
    max_payload=st.integers(1024, 20_000),
    seed=st.integers(0, 2**32),
    dup_count=st.integers(0, 5),
)
def test_split_shuffle_duplicate_reassemble_is_identity(
    size: int, max_payload: int, seed: int, dup_count: int
) -> None:
    rnd = random.Random(seed)
    frame = sample_frame(rnd.randbytes(size), metadata={"n": str(seed)})
    chunks = split_frame(frame, max_payload)
    assert all(len(codec.encode(c)) <= max_payload for c in chunks)
    stream = chunks + [rnd.choice(chunks) for _ in range(dup_count)]
    rnd.shuffle(stream)
    reassembler = Reassembler()
    results = [r for c in stream if (r := reassembler.add("cam-1", wire(c))) is not None]
    assert results == [frame]
    assert reassembler.stats.completed == 1
    assert reassembler.stats.duplicates == dup_count
    assert reassembler.stats.pending_frames == 0 and reassembler.stats.pending_bytes == 0


def test_interleaved_frames_of_several_devices() -> None:
    frames = {(d, s): sample_frame(os.urandom(9000), seq=s) for d in ("a", "b") for s in (1, 2, 3)}
    stream = [(d, c) for (d, _), f in frames.items() for c in split_frame(f, 2048)]
    random.Random(1).shuffle(stream)
    reassembler = Reassembler()
    out = {}
    for device, chunk in stream:
        got = reassembler.add(device, wire(chunk))
        if got is not None:
            out[(device, got.seq)] = got
    assert out == frames


def test_incomplete_frame_expires_and_is_counted() -> None:
    clock = FakeClock()
    reassembler = Reassembler(timeout_s=30, clock=clock)
    chunks = split_frame(sample_frame(os.urandom(10_000)), 2048)
    for c in chunks[:-1]:
        assert reassembler.add("cam-1", wire(c)) is None
    clock.now += 29
    assert reassembler.expire() == []
    clock.now += 2
    assert reassembler.expire() == [("cam-1", b"", 7, 1)]
    assert reassembler.stats.expired == 1 and reassembler.stats.pending_bytes == 0


def test_memory_is_bounded_by_evicting_the_oldest_incomplete_frame() -> None:
    reassembler = Reassembler(max_bytes=5_000, max_bytes_per_device=5_000)  # the global bound
    first = split_frame(sample_frame(os.urandom(10_000), seq=1), 2048)
    second = split_frame(sample_frame(os.urandom(10_000), seq=2), 2048)
    third = split_frame(sample_frame(os.urandom(10_000), seq=3), 2048)
    reassembler.add("cam-1", wire(first[1]))
    reassembler.add("cam-2", wire(second[1]))
    reassembler.add("cam-3", wire(third[1]))  # 3 x ~1.9 KB received > 5 000: frame 1 goes
    assert reassembler.pending() == [("cam-2", b"", 7, 2), ("cam-3", b"", 7, 3)]
    assert reassembler.stats.evicted_memory == 1
    assert 0 < reassembler.stats.pending_bytes <= 5_000


def test_a_claimed_size_costs_nothing_only_received_bytes_count() -> None:
    # 1,000 first chunks each claiming 32 MiB: what is held is what arrived (~1 KB each).
    reassembler = Reassembler()
    for seq in range(1, 1001):
        chunk = frame_pb2.FrameChunk(
            session=1, seq=seq, index=1, count=2, total_size=32 * 1024 * 1024,
            sha256=bytes(32), offset=0, data=os.urandom(1000),
        )  # fmt: skip
        reassembler.add(f"cam-{seq % 10}", chunk)
    assert reassembler.stats.pending_bytes <= 1000 * 1000


def test_one_device_cannot_hold_more_than_its_share_of_incomplete_frames() -> None:
    reassembler = Reassembler(max_per_device=3)
    other = split_frame(sample_frame(os.urandom(5000), seq=99), 2048)
    reassembler.add("cam-ok", wire(other[0]))
    for seq in range(1, 50):
        chunks = split_frame(sample_frame(os.urandom(5000), seq=seq), 2048)
        reassembler.add("cam-bad", wire(chunks[0]))
    assert len([k for k in reassembler.pending() if k[0] == "cam-bad"]) == 3
    assert reassembler.stats.evicted_device == 46
    evicted = reassembler.take_evicted()
    assert len(evicted) == 46 and {r for _, r in evicted} == {"device"}
    # The well-behaved device's frame was never pushed out: it completes.
    for c in other[1:]:
        done = reassembler.add("cam-ok", wire(c))
    assert done is not None and done.seq == 99


def test_one_device_cannot_hold_more_than_its_share_of_bytes() -> None:
    reassembler = Reassembler(max_bytes=40_000)  # 10 000 per device
    other = split_frame(sample_frame(os.urandom(5000), seq=99), 2048)
    reassembler.add("cam-ok", wire(other[0]))
    for seq in range(1, 30):
        chunks = split_frame(sample_frame(os.urandom(8000), seq=seq), 2048)
        for c in chunks[:-1]:  # never completes
            reassembler.add("cam-bad", wire(c))
    assert reassembler.stats.pending_bytes <= 10_000 + 2048 * 2
    assert reassembler.stats.evicted_memory == 0 and reassembler.stats.evicted_device > 0
    for c in other[1:]:
        done = reassembler.add("cam-ok", wire(c))
    assert done is not None and done.seq == 99


def test_incarnations_reassemble_apart() -> None:
    reassembler = Reassembler()
    a = sample_frame(os.urandom(5000), seq=1)
    b = sample_frame(os.urandom(5000), seq=1)
    a.incarnation, b.incarnation = b"A" * 8, b"B" * 8
    out = []
    for ca, cb in zip(split_frame(a, 2048), split_frame(b, 2048), strict=True):
        out += [reassembler.add("cam-1", wire(ca)), reassembler.add("cam-1", wire(cb))]
    done = [f for f in out if f is not None]
    assert [(f.incarnation, f.data) for f in done] == [
        (a.incarnation, a.data),
        (b.incarnation, b.data),
    ]


def test_a_frame_announcing_more_than_the_limit_is_refused() -> None:
    reassembler = Reassembler(max_frame_bytes=100_000)
    chunk = split_frame(sample_frame(os.urandom(200_000)), 64 * 1024)[0]
    with pytest.raises(ContractError) as info:
        reassembler.add("cam-1", wire(chunk))
    assert info.value.reason is Reason.INVALID
    assert reassembler.stats.pending_bytes == 0


def test_a_conflicting_chunk_is_refused_and_the_good_partial_survives() -> None:
    frame = sample_frame(os.urandom(6000))
    chunks = split_frame(frame, 2048)
    reassembler = Reassembler()
    reassembler.add("cam-1", wire(chunks[0]))
    liar = frame_pb2.FrameChunk()
    liar.CopyFrom(chunks[1])
    liar.total_size += 1
    with pytest.raises(ContractError) as info:
        reassembler.add("cam-1", wire(liar))
    assert info.value.reason is Reason.CHUNK_MISMATCH
    results = [reassembler.add("cam-1", wire(c)) for c in chunks[1:]]
    assert results[-1] == frame


def test_corrupted_chunk_data_fails_the_sha256_check() -> None:
    frame = sample_frame(os.urandom(6000))
    chunks = split_frame(frame, 2048)
    chunks[1].data = bytes(b ^ 0xFF for b in chunks[1].data)
    reassembler = Reassembler()
    with pytest.raises(ContractError) as info:
        for c in chunks:
            reassembler.add("cam-1", wire(c))
    assert info.value.reason is Reason.CHECKSUM_MISMATCH
    assert reassembler.stats.checksum_failed == 1 and reassembler.stats.pending_frames == 0


def test_a_late_duplicate_after_completion_is_a_duplicate_not_a_new_partial() -> None:
    chunks = split_frame(sample_frame(os.urandom(6000)), 2048)
    reassembler = Reassembler()
    for c in chunks:
        reassembler.add("cam-1", wire(c))
    assert reassembler.add("cam-1", wire(chunks[1])) is None
    assert reassembler.stats.duplicates == 1 and reassembler.pending() == []


def test_too_small_max_payload_is_refused() -> None:
    with pytest.raises(ValueError, match="below the minimum"):
        split_frame(sample_frame(b"x"), 100)
