"""``camfleet sim esp32``: N real nodes against a broker, with compressed sleep."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from camfleet.proto import codec, topics

CAMFLEET = str(Path(sys.executable).parent / "camfleet")


def test_sim_runs_n_nodes_that_publish_decodable_frames(mosquitto):
    frames: dict[str, list[tuple[int, bool]]] = {}
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(client, userdata, msg):
        t = topics.parse(msg.topic)
        frame = codec.decode(t.kind, msg.payload).message  # raises on anything malformed
        with lock:
            frames.setdefault(t.device_id, []).append((frame.session, frame.historical))

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-watch")
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe(topics.device_filter(topics.Kind.FRAME), qos=1)
    sub.loop_start()
    assert subscribed.wait(60)
    try:
        run = subprocess.run(
            [
                *(CAMFLEET, "sim", "esp32", "-n", "2", "--broker", mosquitto.url, "--wakes", "2"),
                *("--interval", "60", "--time-scale", "0.001", "--json"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert run.returncode == 0, run.stderr
    reports = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(reports) == 4
    assert {r["ended"] for r in reports} == {"deepsleep"}
    assert all(0 < r["sleep_ms"] <= 60_000 for r in reports)
    # no controller sends receipts here, so the second wake also replays the first frame
    expected = [(1, False), (1, True), (2, False)]
    assert {d: sorted(f) for d, f in frames.items()} == {
        "sim-esp32-0": expected,
        "sim-esp32-1": expected,
    }


def test_sim_bad_broker_url_is_one_clear_line():
    run = subprocess.run(
        [CAMFLEET, "sim", "esp32", "--broker", "http://nowhere"], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "camfleet: error: invalid broker address 'http://nowhere': scheme must be mqtt:// or mqtts://"
    ]


def test_sim_nodes_with_keys_act_on_what_the_real_controller_signs(mosquitto, tmp_path):
    """--keys-in: each node gets a key in the controller's data directory, so the receipts of
    that controller (signed) empty its spool; no refusals."""
    from camfleet.controller.device_keys import registry_keys
    from camfleet.testing.controller_process import frame_rows, start_controller

    data = tmp_path / "data"
    ctl = start_controller(mosquitto.url, data)
    try:
        run = subprocess.run(
            [
                *(CAMFLEET, "sim", "esp32", "-n", "1", "--broker", mosquitto.url, "--wakes", "3"),
                *("--interval", "60", "--time-scale", "0.001", "--json"),
                *("--keys-in", str(data), "--state-dir", str(tmp_path / "sim")),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        ctl.stop()
    assert run.returncode == 0, run.stderr
    with registry_keys(data) as keys:
        key = keys.get("sim-esp32-0")
    assert key is not None and len(key) == 32
    stored = sorted((r["session"], r["seq"]) for r in frame_rows(data, "sim-esp32-0"))
    assert stored == [(1, 1), (2, 1), (3, 1)]  # each frame once: receipts were accepted
    assert not list((tmp_path / "sim" / "sim-esp32-0" / "fs" / "spool").glob("*.f"))
