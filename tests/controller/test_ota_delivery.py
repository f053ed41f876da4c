"""The OTA block server: blocks from a cache (the artifact is read once), any block on request,
and the two limits that keep a rollout from starving ingest (transfers at a time, blocks per
second), on a fake clock."""

from __future__ import annotations

import hashlib
from typing import Any

from camfleet.controller.metrics import Metrics
from camfleet.controller.ota.artifacts import ArtifactStore
from camfleet.controller.ota.delivery import BlockServer
from camfleet.controller.storage import SqliteDatabase
from camfleet.controller.storage.migrations import migrate
from camfleet.proto.v1 import ota_pb2
from tests.ota_helpers import release_key, signed_image

__all__ = ["release_key"]  # fixture


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.waited = 0.0

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        self.waited += seconds
        return False


class CountingStore(ArtifactStore):
    reads = 0

    def read(self, artifact_id: str) -> Any:
        self.reads += 1
        return super().read(artifact_id)


def _server(tmp_path, key, **kw):  # type: ignore[no-untyped-def]
    db = SqliteDatabase(tmp_path / "r.sqlite3")
    migrate(db)
    store = CountingStore(db, tmp_path / "ota", key.public.read_bytes(), 0x1A0000)
    data = signed_image("5.0.0", 100_000, key, tmp_path)
    art = store.add(data)
    sent: list[tuple[str, ota_pb2.OtaBlock]] = []
    t = FakeTime()
    server = BlockServer(
        store,
        lambda topic, payload, qos: sent.append((topic, ota_pb2.OtaBlock.FromString(payload))),
        Metrics(),
        clock=t.clock,
        wait=t.wait,
        **kw,
    )
    return server, store, art["id"], data, sent, t


def _req(art: str, first: int, count: int, wanted: bytes = b"") -> ota_pb2.OtaBlockRequest:
    return ota_pb2.OtaBlockRequest(artifact_id=art, first_block=first, count=count, wanted=wanted)


def test_blocks_from_the_cache_resumable_and_bitmap(tmp_path, release_key) -> None:  # type: ignore[no-untyped-def]
    server, store, art, data, sent, _ = _server(tmp_path, release_key)
    total = -(-len(data) // 4096)
    server.serve("cam-1", _req(art, 0, 8))
    server.serve("cam-2", _req(art, total - 3, 8))  # resumes near the end; stops at the last
    server.serve("cam-1", _req(art, 8, 8, wanted=bytes([0b00000101])))  # blocks 8 and 10 only
    assert [(t.split("/")[2], b.index) for t, b in sent] == (
        [("cam-1", i) for i in range(8)]
        + [("cam-2", i) for i in range(total - 3, total)]
        + [("cam-1", 8), ("cam-1", 10)]
    )
    for _, b in sent:
        chunk = data[b.index * 4096 : (b.index + 1) * 4096]
        assert b.data == chunk and b.sha256 == hashlib.sha256(chunk).digest()
        assert b.total_blocks == total
    assert store.reads == 1  # read once, served three times
    server.serve("cam-1", _req("fw-unknown", 0, 8))
    assert server.metrics.get("ota_requests_dropped_total", reason="unknown_artifact") == 1


def test_transfers_at_a_time_and_blocks_per_second(tmp_path, release_key) -> None:  # type: ignore[no-untyped-def]
    server, _, art, _, sent, t = _server(
        tmp_path, release_key, max_transfers=2, blocks_per_s=10, transfer_idle_s=10
    )
    server.serve("a", _req(art, 0, 8))
    server.serve("b", _req(art, 0, 8))
    server.serve("c", _req(art, 0, 8))  # a third transfer waits (dropped, asked again later)
    assert {t_.split("/")[2] for t_, _ in sent} == {"a", "b"}
    assert server.metrics.get("ota_requests_dropped_total", reason="max_transfers") == 1
    # 16 blocks at 10 per second: the first 10 from a full bucket, 6 more take 0.6 s
    assert 0.55 <= t.waited <= 0.65
    t.now += 11  # a and b went quiet: c gets its turn
    server.serve("c", _req(art, 0, 8))
    assert [b.index for t_, b in sent if "/c/" in t_] == list(range(8))
    assert server.active_transfers() == 1
