"""The frame index: one row per stored frame, keyed by (device, session, seq) for dedup."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from camfleet.controller.registry import wake_cause_name
from camfleet.controller.storage.database import Row, Tx
from camfleet.proto.v1 import frame_pb2

_wake_cause = functools.lru_cache(maxsize=64)(wake_cause_name)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    device_id: str
    incarnation: str  # text form (frame_store.incarnation_tag)
    session: int
    seq: int
    store_key: str
    frame: frame_pb2.Frame
    received_ms: int
    conflict: bool = False


Identity = tuple[str, str, int, int]  # (device, incarnation tag, session, seq)


def digests(tx: Tx, keys: list[Identity]) -> dict[Identity, set[str]]:
    """{identity: sha256 hex of every row stored under it} for the ``keys`` already indexed;
    one query per device incarnation session."""
    wanted: dict[tuple[str, str, int], list[int]] = {}
    for device_id, incarnation, session, seq in keys:
        wanted.setdefault((device_id, incarnation, session), []).append(seq)
    found: dict[Identity, set[str]] = {}
    for (device_id, incarnation, session), seqs in wanted.items():
        for i in range(0, len(seqs), 500):
            part = seqs[i : i + 500]
            rows = tx.query(
                "SELECT seq, sha256 FROM frames WHERE device_id = ? AND incarnation = ? "
                "AND session = ? AND seq IN (" + ",".join("?" * len(part)) + ")",
                [device_id, incarnation, session, *part],
            )
            for r in rows:
                key = (device_id, incarnation, session, r["seq"])
                found.setdefault(key, set()).add(r["sha256"])
    return found


def sha256_of_keys(tx: Tx, keys: list[str]) -> dict[str, str]:
    """{store key: sha256 hex} for the keys whose frame is indexed (frame-log replay)."""
    found: dict[str, str] = {}
    for i in range(0, len(keys), 500):
        part = keys[i : i + 500]
        rows = tx.query(
            "SELECT store_key, sha256 FROM frames WHERE store_key IN ("
            + ",".join("?" * len(part))
            + ")",
            part,
        )
        found.update((r["store_key"], r["sha256"]) for r in rows)
    return found


def insert(tx: Tx, entries: list[IndexEntry], stored_ms: int) -> None:
    """Insert rows; a row already there (another controller stored it first) is left alone."""
    tx.executemany(
        "INSERT INTO frames (device_id, incarnation, session, seq, sha256, conflict, capture_id, "
        "captured_at_ms, received_ms, stored_ms, size, store_key, content_type, width, height, "
        "historical, command_id, wake_cause, metadata) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT (device_id, incarnation, session, seq, sha256) DO NOTHING",
        [
            (
                e.device_id,
                e.incarnation,
                e.session,
                e.seq,
                e.frame.sha256.hex(),
                int(e.conflict),
                e.frame.capture_id,
                e.frame.captured_at_ms or e.received_ms,
                e.received_ms,
                stored_ms,
                e.frame.size,
                e.store_key,
                e.frame.content_type or "image/jpeg",
                e.frame.width,
                e.frame.height,
                int(e.frame.historical),
                e.frame.command_id,
                _wake_cause(e.frame.wake_cause),
                json.dumps(dict(e.frame.metadata), sort_keys=True) if e.frame.metadata else "{}",
            )
            for e in entries
        ],
    )
    latest: dict[str, int] = {}
    for e in entries:
        latest[e.device_id] = max(latest.get(e.device_id, 0), e.received_ms)
    for device_id, when in latest.items():
        tx.execute(
            "UPDATE devices SET last_frame_ms = ? WHERE device_id = ? AND last_frame_ms < ?",
            (when, device_id, when),
        )


_COLUMNS = (
    "device_id, incarnation, session, seq, conflict, capture_id, captured_at_ms, received_ms, "
    "stored_ms, size, sha256, store_key, content_type, width, height, historical, command_id, "
    "wake_cause, metadata"
)


def to_json(row: Row) -> dict[str, Any]:
    out = dict(row)
    out["metadata"] = json.loads(row["metadata"])
    out["historical"] = bool(row["historical"])
    out["conflict"] = bool(row["conflict"])
    out["id"] = f"{row['session']}-{row['seq']}"
    return out


def query(
    tx: Tx,
    device_id: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    command_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Row]:
    """Frames newest first, filtered."""
    where, params = [], []
    for clause, value in (
        ("device_id = ?", device_id),
        ("captured_at_ms >= ?", since_ms),
        ("captured_at_ms < ?", until_ms),
        ("command_id = ?", command_id),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    sql = f"SELECT {_COLUMNS} FROM frames"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY captured_at_ms DESC, session DESC, seq DESC, stored_ms DESC LIMIT ? OFFSET ?"
    return tx.query(sql, [*params, limit, offset])


def get(tx: Tx, device_id: str, session: int, seq: int) -> Row | None:
    """The frame (session, seq) of the device; of several (incarnations, conflicts), the one
    stored last."""
    rows = tx.query(
        f"SELECT {_COLUMNS} FROM frames WHERE device_id = ? AND session = ? AND seq = ? "
        "ORDER BY stored_ms DESC LIMIT 1",
        (device_id, session, seq),
    )
    return rows[0] if rows else None


def latest(tx: Tx, device_id: str) -> Row | None:
    rows = query(tx, device_id=device_id, limit=1)
    return rows[0] if rows else None
