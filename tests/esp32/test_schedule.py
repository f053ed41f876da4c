"""The wake timer from the desired schedule (interval, daily UTC times, max sleep), computed by
the node's wake.py under MicroPython."""

from __future__ import annotations

import json
from pathlib import Path

from camfleet.esp32_node.tools.hostdevice import HostDevice
from camfleet.proto.v1 import config_pb2

SCRIPT = Path(__file__).parents[1] / "mp" / "schedule_check.py"
DAY = 86400
MIDNIGHT = 1_795_219_200  # a UTC midnight (2026-11-21)


def next_wakes(tmp_path: Path, cases: list) -> list:
    dev = HostDevice(tmp_path / "sched", "sched")
    dev.provision(broker_host="127.0.0.1", broker_port=1, jpegs=[b"\xff\xd8\xff\xd9"])
    wrapper = dev.dir / "run.py"
    source = (
        f"import sys\nsys.argv.append({json.dumps(cases)!r})\nexec(open({str(SCRIPT)!r}).read())\n"
    )
    wrapper.write_text(source)
    result = dev.run_wake(script=wrapper)
    line = next(x for x in result.output.splitlines() if x.startswith("RESULT "))
    return [tuple(x) for x in json.loads(line[len("RESULT ") :])]


def test_interval_longer_than_max_sleep_still_captures(mosquitto, make_device, receiver_for):
    cfg = config_pb2.DeviceConfig()
    cfg.schedule.interval_s = 7200
    cfg.sleep.max_sleep_s = 3600
    cfg.sleep.awake_window_s = 2
    dev = make_device(mosquitto, config=cfg.SerializeToString())
    rx = receiver_for(mosquitto, dev)
    first = dev.run_wake()  # power-on frame; the interval starts now
    assert first.sleep_ms == 3_600_000
    check = dev.run_wake()  # after 1 h: nothing due yet
    assert len(rx.frames) == 1
    assert 3_590_000 < check.sleep_ms < 3_600_000  # the rest of the 2 h
    dev.run_wake()
    assert len(rx.frames) == 2  # captured at 2 h


def test_next_wake_from_schedule(tmp_path):
    sleep = {"max_sleep_s": 3600}
    assert MIDNIGHT % DAY == 0
    cases = [
        ({"schedule": {"interval_s": 300}, "sleep": sleep}, MIDNIGHT, None),
        ({"schedule": {"daily_times_s": [43200]}, "sleep": sleep}, MIDNIGHT + 43000, None),
        ({"schedule": {"daily_times_s": [43200]}, "sleep": sleep}, MIDNIGHT + 43300, None),
        ({"schedule": {"daily_times_s": [0, 21600]}, "sleep": sleep}, MIDNIGHT + DAY - 1800, None),
        ({"schedule": {"interval_s": 600, "daily_times_s": [100]}, "sleep": sleep}, MIDNIGHT, None),
        ({"schedule": {"daily_times_s": [43200]}, "sleep": sleep}, 0, None),  # no clock yet
        ({"schedule": {"interval_s": 7200}, "sleep": sleep}, MIDNIGHT, None),
        ({"schedule": {"interval_s": 7200}, "sleep": sleep}, MIDNIGHT, 3_599_000),
        ({"schedule": {"interval_s": 300}, "sleep": sleep}, MIDNIGHT, 120_500),
        ({"schedule": {}, "sleep": sleep}, MIDNIGHT, None),
    ]
    assert next_wakes(tmp_path, cases) == [
        (300_000, "capture"),
        (200_000, "capture"),
        (3_600_000, "check"),  # next noon is 23.9 h away: wake at max_sleep_s to check in
        (1_800_000, "capture"),  # midnight, across the day boundary
        (100_000, "capture"),  # the nearer of interval and daily time
        (3_600_000, "check"),  # daily times need a clock
        (3_600_000, "check"),  # interval beyond max sleep: check in at max_sleep_s ...
        (3_599_000, "capture"),  # ... and the rest of the interval after that
        (120_500, "capture"),  # what remains of the interval after a PIR wake
        (3_600_000, "check"),
    ]
