"""Receipts: which (session, seq) frames the controller has durably stored.

The controller folds stored frames into as few inclusive ranges as possible
(:func:`ranges_from`); a device tests each spooled frame with :func:`covers` and deletes only
what a receipt covers (docs/protocol.md, Durability).
"""

from __future__ import annotations

from collections.abc import Iterable

from camfleet.proto.v1 import frame_pb2


def ranges_from(stored: Iterable[tuple[int, int]]) -> list[frame_pb2.SeqRange]:
    """Fold (session, seq) pairs into sorted, merged inclusive SeqRanges."""
    ranges: list[frame_pb2.SeqRange] = []
    for session, seq in sorted(set(stored)):
        last = ranges[-1] if ranges else None
        if last is not None and last.session == session and last.last_seq + 1 == seq:
            last.last_seq = seq
        else:
            ranges.append(frame_pb2.SeqRange(session=session, first_seq=seq, last_seq=seq))
    return ranges


def make_receipt(stored: Iterable[tuple[int, int]], timestamp_ms: int = 0) -> frame_pb2.Receipt:
    return frame_pb2.Receipt(stored=ranges_from(stored), timestamp_ms=timestamp_ms)


def covers(receipt: frame_pb2.Receipt, session: int, seq: int) -> bool:
    """True when the receipt says frame (session, seq) is stored."""
    return any(r.session == session and r.first_seq <= seq <= r.last_seq for r in receipt.stored)
