"""Receipts: which (incarnation, session, seq) frames the controller has durably stored.

The controller folds stored frames into as few inclusive ranges as possible
(:func:`ranges_from`), at most :data:`MAX_RANGES` per message (:func:`make_receipts`); a device
tests each spooled frame with :func:`covers` and deletes only what a receipt covers and it
really sent (docs/protocol.md, Durability).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from camfleet.proto.v1 import frame_pb2

#: Most ranges in one Receipt message: devices refuse larger receipts (an ESP32 decodes a
#: receipt into memory), so the controller splits.
MAX_RANGES = 32


def ranges_from(
    stored: Iterable[tuple[int, int]], incarnation: bytes = b""
) -> list[frame_pb2.SeqRange]:
    """Fold (session, seq) pairs of one incarnation into sorted, merged inclusive SeqRanges."""
    ranges: list[frame_pb2.SeqRange] = []
    for session, seq in sorted(set(stored)):
        last = ranges[-1] if ranges else None
        if last is not None and last.session == session and last.last_seq + 1 == seq:
            last.last_seq = seq
        else:
            ranges.append(
                frame_pb2.SeqRange(
                    session=session, first_seq=seq, last_seq=seq, incarnation=incarnation
                )
            )
    return ranges


def make_receipt(
    stored: Iterable[tuple[int, int]], timestamp_ms: int = 0, incarnation: bytes = b""
) -> frame_pb2.Receipt:
    return frame_pb2.Receipt(stored=ranges_from(stored, incarnation), timestamp_ms=timestamp_ms)


def make_receipts(
    stored: Mapping[bytes, Iterable[tuple[int, int]]],
    timestamp_ms: int = 0,
    max_ranges: int = MAX_RANGES,
) -> list[frame_pb2.Receipt]:
    """Receipts for {incarnation: (session, seq) pairs}, each with at most ``max_ranges``."""
    ranges = [r for inc in sorted(stored) for r in ranges_from(stored[inc], inc)]
    return [
        frame_pb2.Receipt(stored=ranges[i : i + max_ranges], timestamp_ms=timestamp_ms)
        for i in range(0, len(ranges), max_ranges)
    ]


def covers(receipt: frame_pb2.Receipt, session: int, seq: int, incarnation: bytes = b"") -> bool:
    """True when the receipt says frame (incarnation, session, seq) is stored."""
    return any(
        r.session == session and r.first_seq <= seq <= r.last_seq and r.incarnation == incarnation
        for r in receipt.stored
    )
