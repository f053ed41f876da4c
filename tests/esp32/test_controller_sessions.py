"""The real MicroPython node talking to the real controller: every wake is a new session whose
seq starts at 1 again, and every frame of every session is stored and receipted."""

from __future__ import annotations

import hashlib
from pathlib import Path

from camfleet.proto import codec
from camfleet.proto.v1 import config_pb2
from camfleet.testing.controller_process import frame_rows, start_controller
from tests.esp32.conftest import DEVICE_KEY


def test_every_session_restarting_seq_at_1_is_stored_and_receipted(
    mosquitto, make_device, tmp_path: Path
):
    """Catches a controller that deduplicates on (device, seq) or (device, capture id) without
    the session (frames 2-1, 3-1 ... would be dropped as duplicates of 1-1, yet receipted, and
    the node would delete its only copy), and receipts built from the wrong session."""
    data = tmp_path / "data"
    ctl = start_controller(mosquitto.url, data)
    try:
        cfg = config_pb2.DeviceConfig()
        cfg.sleep.awake_window_s = 30  # waits for receipts; leaves as soon as they are in
        cfg.camera.width, cfg.camera.height = 640, 480
        cfg.sleep.ext0_pin = 13  # the PIR: its deep sleep arms ext0, so motion can wake it
        dev = make_device(mosquitto, config=codec.encode(cfg))
        ctl.device_keys.put(dev.device_id, DEVICE_KEY)  # the controller signs its receipts
        assert dev.run_wake().ended == "deepsleep"  # power-on: one frame, session 1
        for _ in range(2):  # motion: a burst of three, seq 1..3, in sessions 2 and 3
            woke = dev.run_wake("ext0")
            assert woke.ended == "deepsleep", woke.output
            assert dev.spool_files() == [], "left the wake with frames not receipted"
        rows = frame_rows(data, dev.device_id)
        assert sorted((r["session"], r["seq"]) for r in rows) == [
            (1, 1),
            (2, 1),
            (2, 2),
            (2, 3),
            (3, 1),
            (3, 2),
            (3, 3),
        ]
        assert ctl.metrics.total("frames_duplicate_total") == 0
        assert ctl.store.flush(30)
        for r in rows:
            blob = (data / r["store_key"]).read_bytes()
            assert blob[:2] == b"\xff\xd8"  # the node's JPEG, not something else
            assert hashlib.sha256(blob).hexdigest() == r["sha256"]
    finally:
        ctl.stop()
