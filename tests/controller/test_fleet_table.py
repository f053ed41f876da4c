"""scripts/fleet_table.py: the fleet's table from retained topics alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from camfleet.proto import codec
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import telemetry_pb2
from camfleet.testing.controller_process import Waiter
from camfleet.testing.pictures import picture_jpeg

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fleet_table.py"


def test_fleet_table_once(controllers, devices, mosquitto) -> None:  # type: ignore[no-untyped-def]
    ctl = controllers()
    waiter = Waiter(ctl)
    awake = devices("tbl")
    awake.publish_raw(
        Kind.TELEMETRY.value,
        codec.encode(
            telemetry_pb2.Telemetry(
                timestamp_ms=1, session=1, battery_pct=66, rssi_dbm=-70, spool_depth=4
            )
        ),
    )
    awake.publish_frame(awake.make_frame(data=picture_jpeg(1)))
    sleeper = devices("nap")
    sleeper.sleep(3600)

    def ready() -> bool:
        with ctl.db.read() as tx:  # a new snapshot each time
            return bool(
                tx.scalar("SELECT COUNT(*) FROM telemetry") == 1
                and tx.scalar("SELECT COUNT(*) FROM frames") == 1
                and tx.scalar(
                    "SELECT presence FROM devices WHERE device_id = ?", (sleeper.device_id,)
                )
                == "asleep"
            )

    assert waiter.wait_for(ready)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--broker", mosquitto.url, "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["DEVICE", "STATE", "FIRMWARE", "BATTERY", "RSSI", "SPOOL", "NEXT",
                                "WAKE", "LAST", "FRAME"]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert {awake.device_id, sleeper.device_id} <= set(rows)
    assert rows[awake.device_id][1:7] == ["online", "1.0.0", "66%", "-70", "dBm", "4"]
    assert rows[awake.device_id][-1].endswith("+00:00")
    assert rows[sleeper.device_id][1] == "asleep"
    assert rows[sleeper.device_id][-2].endswith("Z")  # its next wake (date and time)
    assert rows[sleeper.device_id][-1] == "-"  # it sent no frame


def test_fleet_table_unreachable_broker() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--broker", "mqtt://127.0.0.1:1", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.strip().startswith("fleet_table: cannot reach the broker")
    assert "Traceback" not in out.stderr
