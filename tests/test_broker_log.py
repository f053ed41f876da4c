"""`camfleet broker run` keeps mosquitto's log in --data, rotated, not only in memory."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.mosquitto import Mosquitto, free_port


def _visit(port: int, client_id: str) -> None:
    """Connect and disconnect cleanly: mosquitto logs both lines with the client id."""
    connected = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(60)
    c.disconnect()
    c.loop_stop()


def test_broker_run_writes_the_log_into_data(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "broker"
    proc = subprocess.Popen(
        [sys.executable, "-m", "camfleet", "broker", "run", "--port", str(port), "--data", data],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert "listening" in proc.stdout.readline()
    _visit(port, "log-probe")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    log = (data / "mosquitto.log").read_text()
    assert " running" in log  # from the start ...
    assert "log-probe" in log  # ... what happened while it ran ...
    assert "terminating" in log  # ... to the clean shutdown


def test_broker_log_is_rotated_in_bounded_space(tmp_path: Path) -> None:
    log_file = tmp_path / "mosquitto.log"
    broker = Mosquitto(tmp_path / "b", log_file=log_file, log_max_bytes=2000, log_backups=2)
    broker.start()
    try:
        for i in range(40):  # ~200 bytes of log each: several rotations
            _visit(broker.port, f"rotation-probe-{i:02d}")
    finally:
        broker.stop()
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("mosquitto.log"))
    assert files == ["mosquitto.log", "mosquitto.log.1", "mosquitto.log.2"]
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)
    # The newest lines are in the current file; the oldest were dropped with the third backup.
    assert "terminating" in log_file.read_text()
    kept = "".join((tmp_path / f).read_text() for f in files)
    assert "rotation-probe-39" in kept and "rotation-probe-00" not in kept
