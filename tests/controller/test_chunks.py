"""Chunked frames survive loss and reordering; incomplete ones expire and are counted."""

from __future__ import annotations

import random

from camfleet.testing.controller_process import Waiter, frame_rows


def test_chunks_reordered_duplicated_lost_then_resent(controllers, devices, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctl = controllers(chunk_timeout_s=1.0)
    waiter = Waiter(ctl)
    dev = devices("chunky")
    rnd = random.Random(4)
    a, b, c = (dev.make_frame(size=200_000 + i * 1000) for i in range(3))
    chunks_a = dev.chunks_of(a, 16 * 1024)
    chunks_b = dev.chunks_of(b, 16 * 1024)
    chunks_c = dev.chunks_of(c, 16 * 1024)
    assert len(chunks_a) > 10
    lost = chunks_b[5]
    mixed = chunks_a + chunks_a[:3] + [x for x in chunks_b if x is not lost] + chunks_c
    rnd.shuffle(mixed)  # reordered within and across frames, with duplicates
    dev.publish_chunks(mixed)
    assert dev.wait_receipted([(a.session, a.seq), (c.session, c.seq)], timeout=20)
    # b lacks a chunk: it must expire (counted), not be stored.
    assert waiter.wait_for(lambda: ctl.metrics.total("chunked_frames_expired_total") == 1, 10)
    assert {(r["session"], r["seq"]) for r in frame_rows(tmp_path / "data")} == {
        (a.session, a.seq),
        (c.session, c.seq),
    }
    # The device never got a receipt for b, so it sends it again (all chunks, reversed order).
    dev.publish_chunks(list(reversed(chunks_b)))
    assert dev.wait_receipted(timeout=20)
    rows = {(r["session"], r["seq"]): r for r in frame_rows(tmp_path / "data")}
    assert len(rows) == 3
    for f in (a, b, c):  # served from memory until its file is written behind the frame log
        assert ctl.store.get(rows[(f.session, f.seq)]["store_key"]) == f.data
    assert ctl.store.flush(30)
    for f in (a, b, c):
        stored = (tmp_path / "data" / rows[(f.session, f.seq)]["store_key"]).read_bytes()
        assert stored == f.data
