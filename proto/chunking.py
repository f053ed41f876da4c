"""Split frames that exceed the max MQTT payload into chunks, and put them back together.

A device publishes a Frame whose encoded size is at most ``max_payload`` (default 128 KiB, the
AWS IoT Core limit) as one message on ``frame``; a larger one as FrameChunk messages on ``chunk``,
each at most ``max_payload`` bytes encoded. The receiver's :class:`Reassembler` accepts chunks in
any order, drops duplicates, checks total size and SHA-256, gives up on frames that stay
incomplete past a timeout, and bounds what it holds: the bytes it really received (never a
claimed size), the incomplete frames per device and in all (oldest evicted first). Every outcome
is counted in :class:`ReassemblyStats`.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from camfleet.proto.codec import DEFAULT_MAX_PAYLOAD
from camfleet.proto.errors import ContractError, Reason
from camfleet.proto.v1 import frame_pb2

#: The smallest max payload that leaves room for a useful chunk after the header fields.
MIN_MAX_PAYLOAD = 1024
_MAX_VARINT32 = 0xFFFFFFFF


def needs_chunking(frame: frame_pb2.Frame, max_payload: int = DEFAULT_MAX_PAYLOAD) -> bool:
    """True when the encoded frame is larger than ``max_payload``."""
    return frame.ByteSize() > max_payload


def split_frame(
    frame: frame_pb2.Frame, max_payload: int = DEFAULT_MAX_PAYLOAD
) -> list[frame_pb2.FrameChunk]:
    """Split ``frame`` into chunks whose encoded size is at most ``max_payload`` each.

    Chunk 0 carries the frame header (every field but data). Works for any frame, even one that
    would fit (it then gives one chunk).
    """
    if max_payload < MIN_MAX_PAYLOAD:
        raise ValueError(f"max_payload {max_payload} is below the minimum {MIN_MAX_PAYLOAD}")
    data = frame.data
    header = frame_pb2.Frame()
    header.CopyFrom(frame)
    header.ClearField("data")
    total = len(data)

    def overhead(with_header: bool) -> int:
        # Worst-case size of every field but data, plus data's tag (1) and length varint (<= 5).
        probe = frame_pb2.FrameChunk(
            capture_id=frame.capture_id,
            session=frame.session,
            seq=frame.seq,
            index=_MAX_VARINT32,
            count=_MAX_VARINT32,
            total_size=_MAX_VARINT32,
            offset=_MAX_VARINT32,
            sha256=frame.sha256,
            incarnation=frame.incarnation,
        )
        if with_header:
            probe.header.CopyFrom(header)
        return probe.ByteSize() + 6

    first_room = max_payload - overhead(True)
    room = max_payload - overhead(False)
    if first_room < 1 or room < 1:
        raise ValueError(f"max_payload {max_payload} leaves no room for data after the header")
    bounds = [(0, min(first_room, total))]
    while bounds[-1][1] < total:
        start = bounds[-1][1]
        bounds.append((start, min(start + room, total)))
    count = len(bounds)
    chunks = []
    for index, (start, end) in enumerate(bounds):
        chunk = frame_pb2.FrameChunk(
            capture_id=frame.capture_id,
            session=frame.session,
            seq=frame.seq,
            index=index,
            count=count,
            total_size=total,
            sha256=frame.sha256,
            offset=start,
            data=data[start:end],
            incarnation=frame.incarnation,
        )
        if index == 0:
            chunk.header.CopyFrom(header)
        chunks.append(chunk)
    return chunks


@dataclass
class ReassemblyStats:
    """Counters of a Reassembler; all monotonic except the two ``pending_*`` gauges."""

    completed: int = 0
    duplicates: int = 0
    expired: int = 0
    #: Evicted to make room: over the per-device limit, the frame limit or the byte limit.
    evicted_device: int = 0
    evicted_memory: int = 0
    mismatched: int = 0
    checksum_failed: int = 0
    pending_frames: int = 0
    pending_bytes: int = 0

    @property
    def evicted(self) -> int:
        return self.evicted_device + self.evicted_memory


@dataclass
class _Partial:
    count: int
    total_size: int
    sha256: bytes
    started: float
    #: index -> (offset, data): only what arrived, so a chunk claiming 32 MiB costs its own bytes.
    pieces: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    received_bytes: int = 0
    header: frame_pb2.Frame | None = None


Key = tuple[str, bytes, int, int]  # (device_id, incarnation, session, seq)


class Reassembler:
    """Rebuilds frames from chunks. Not thread-safe: feed it from one thread or task.

    Bounds: ``max_bytes`` of received chunk data held for incomplete frames in all,
    ``max_frames`` incomplete frames in all, ``max_per_device`` incomplete frames and
    ``max_bytes_per_device`` bytes (default a quarter of ``max_bytes``) per device (past them the
    device's own oldest is evicted, so one device cannot push out the others');
    ``max_frame_bytes`` refuses a frame announcing more than that. ``timeout_s`` is how long an
    incomplete frame may wait for its missing chunks; call :meth:`expire` regularly (``add``
    also does). Memory is what was received, never what a chunk claims.
    """

    def __init__(
        self,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_frame_bytes: int = 32 * 1024 * 1024,
        max_frames: int = 4096,
        max_per_device: int = 8,
        max_bytes_per_device: int | None = None,
        timeout_s: float = 120.0,
        remember_completed: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_frame_bytes = max_frame_bytes
        self.max_frames = max_frames
        self.max_per_device = max_per_device
        self.max_bytes_per_device = (
            max_bytes // 4 if max_bytes_per_device is None else max_bytes_per_device
        )
        self.timeout_s = timeout_s
        self._clock = clock
        self._partials: OrderedDict[Key, _Partial] = OrderedDict()
        self._per_device: dict[str, int] = {}
        self._device_bytes: dict[str, int] = {}
        self._completed: OrderedDict[Key, None] = OrderedDict()
        self._remember = remember_completed
        self.stats = ReassemblyStats()
        #: Keys evicted since the caller last looked (``take_evicted``), with the reason.
        self._evicted: list[tuple[Key, str]] = []

    def add(self, device_id: str, chunk: frame_pb2.FrameChunk) -> frame_pb2.Frame | None:
        """Add one chunk (already decoded and checked by the codec).

        Returns the whole Frame when this chunk completes it, else None. Raises ContractError
        (CHUNK_MISMATCH, INVALID, CHECKSUM_MISMATCH) for a chunk that cannot belong; a bad chunk
        never destroys a good partial frame, but a completed frame whose SHA-256 fails is dropped.
        """
        self.expire()
        key = (device_id, chunk.incarnation, chunk.session, chunk.seq)
        if key in self._completed:
            self.stats.duplicates += 1
            return None
        partial = self._partials.get(key)
        if partial is None:
            partial = self._start(key, chunk)
        elif (chunk.count, chunk.total_size, chunk.sha256) != (
            partial.count,
            partial.total_size,
            partial.sha256,
        ):
            self.stats.mismatched += 1
            raise ContractError(
                Reason.CHUNK_MISMATCH,
                f"{device_id} {chunk.session}-{chunk.seq} chunk {chunk.index}: count/size/sha256 "
                "differ from earlier chunks of the frame",
            )
        if chunk.index in partial.pieces:
            self.stats.duplicates += 1
            return None
        end = chunk.offset + len(chunk.data)
        if end > partial.total_size:
            self.stats.mismatched += 1
            raise ContractError(
                Reason.CHUNK_MISMATCH,
                f"{device_id} {chunk.session}-{chunk.seq} chunk {chunk.index} ends past total_size",
            )
        for offset, data in partial.pieces.values():
            if chunk.offset < offset + len(data) and offset < end:
                self.stats.mismatched += 1
                raise ContractError(
                    Reason.CHUNK_MISMATCH,
                    f"{device_id} {chunk.session}-{chunk.seq} chunk {chunk.index} overlaps another",
                )
        data = chunk.data
        while self._device_bytes.get(device_id, 0) + len(data) > self.max_bytes_per_device:
            oldest = next(k for k in self._partials if k[0] == device_id)
            self._evict(oldest, "device")
            if oldest == key:
                return None  # this frame alone is larger than the device's share: given up
        while self._partials and self.stats.pending_bytes + len(data) > self.max_bytes:
            oldest = next(iter(self._partials))
            self._evict(oldest, "memory")
            if oldest == key:
                return None  # this frame alone is larger than the limit: given up
        partial.pieces[chunk.index] = (chunk.offset, data)
        partial.received_bytes += len(data)
        self.stats.pending_bytes += len(data)
        self._device_bytes[device_id] = self._device_bytes.get(device_id, 0) + len(data)
        if chunk.index == 0:
            partial.header = chunk.header
        if len(partial.pieces) < partial.count:
            return None
        return self._finish(key, partial)

    def _start(self, key: Key, chunk: frame_pb2.FrameChunk) -> _Partial:
        if chunk.total_size > self.max_frame_bytes:
            raise ContractError(
                Reason.INVALID,
                f"{key[0]} {key[2]}-{key[3]}: frame of {chunk.total_size} bytes exceeds the "
                f"reassembly limit {self.max_frame_bytes}",
            )
        device = key[0]
        if self._per_device.get(device, 0) >= self.max_per_device:
            self._evict(next(k for k in self._partials if k[0] == device), "device")
        if len(self._partials) >= self.max_frames:
            self._evict(next(iter(self._partials)), "memory")
        partial = _Partial(chunk.count, chunk.total_size, chunk.sha256, self._clock())
        self._partials[key] = partial
        self._per_device[device] = self._per_device.get(device, 0) + 1
        self.stats.pending_frames += 1
        return partial

    def _evict(self, key: Key, reason: str) -> None:
        self._drop(key)
        if reason == "device":
            self.stats.evicted_device += 1
        else:
            self.stats.evicted_memory += 1
        if len(self._evicted) < 1024:
            self._evicted.append((key, reason))

    def take_evicted(self) -> list[tuple[Key, str]]:
        """(key, reason) of the frames evicted since the last call (at most 1024 kept)."""
        out, self._evicted = self._evicted, []
        return out

    def _finish(self, key: Key, partial: _Partial) -> frame_pb2.Frame:
        self._drop(key)
        if partial.received_bytes != partial.total_size:
            self.stats.checksum_failed += 1
            raise ContractError(
                Reason.CHECKSUM_MISMATCH,
                f"{key[0]} {key[2]}-{key[3]}: chunks hold {partial.received_bytes} bytes, "
                f"total_size says {partial.total_size}",
            )
        # The pieces do not overlap, lie within total_size and add up to it: they tile it.
        data = b"".join(d for _, d in sorted(partial.pieces.values(), key=lambda p: p[0]))
        if hashlib.sha256(data).digest() != partial.sha256:
            self.stats.checksum_failed += 1
            raise ContractError(
                Reason.CHECKSUM_MISMATCH,
                f"{key[0]} {key[2]}-{key[3]}: SHA-256 of the chunks differs",
            )
        frame = frame_pb2.Frame()
        if partial.header is not None:
            frame.CopyFrom(partial.header)
        frame.incarnation, frame.session, frame.seq = key[1], key[2], key[3]
        frame.size = partial.total_size
        frame.sha256 = partial.sha256
        frame.data = data
        self._completed[key] = None
        if len(self._completed) > self._remember:
            self._completed.popitem(last=False)
        self.stats.completed += 1
        return frame

    def _drop(self, key: Key) -> None:
        partial = self._partials.pop(key)
        self.stats.pending_frames -= 1
        self.stats.pending_bytes -= partial.received_bytes
        left = self._per_device[key[0]] - 1
        if left:
            self._per_device[key[0]] = left
        else:
            del self._per_device[key[0]]
        held = self._device_bytes.get(key[0], 0) - partial.received_bytes
        if held > 0:
            self._device_bytes[key[0]] = held
        else:
            self._device_bytes.pop(key[0], None)

    def expire(self) -> list[Key]:
        """Give up on frames incomplete for longer than ``timeout_s``; return their keys."""
        deadline = self._clock() - self.timeout_s
        expired = []
        for k, p in self._partials.items():  # oldest first: stop at the first young one
            if p.started > deadline:
                break
            expired.append(k)
        for key in expired:
            self._drop(key)
            self.stats.expired += 1
        return expired

    def pending(self) -> list[Key]:
        """Keys of the frames still waiting for chunks, oldest first."""
        return list(self._partials)
