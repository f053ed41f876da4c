"""Two controllers on one broker and one registry split the frame load (shared subscription)."""

from __future__ import annotations

from pathlib import Path

from camfleet.testing.controller_process import Waiter, frame_rows

from .test_ingest_durability import assert_stored_exactly_once


def test_two_controllers_share_the_frames(controllers, devices, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    a = controllers(data, share_group="ctl", client_id="ctl-a")
    b = controllers(data, share_group="ctl", client_id="ctl-b")
    waiter = Waiter(a)
    devs = [devices("shared") for _ in range(2)]
    for dev in devs:
        dev.send_frames(60, size=2000)
    for dev in devs:
        assert dev.wait_receipted(timeout=30)
    assert waiter.wait_for(lambda: len(frame_rows(data)) == 120, 10)
    assert a.store.flush(30) and b.store.flush(30)  # files are written behind the frame log
    assert_stored_exactly_once(data, devs)
    stored_a = a.metrics.total("frames_stored_total")
    stored_b = b.metrics.total("frames_stored_total")
    assert stored_a > 0 and stored_b > 0, "the broker did not share the load"
    assert stored_a + stored_b == 120
