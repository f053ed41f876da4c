"""Frames are stored exactly once across kill -9 of the controller and a broker restart."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from camfleet.mosquitto import Mosquitto
from camfleet.testing.controller_process import ControllerProcess, Waiter, frame_rows
from camfleet.testing.sim_device import SimDevice, unique_id


def assert_stored_exactly_once(data: Path, devices: list[SimDevice]) -> None:
    for dev in devices:
        rows = frame_rows(data, dev.device_id)
        keys = [(r["session"], r["seq"]) for r in rows]
        assert sorted(keys) == sorted(dev.spool), (
            f"{dev.device_id}: index differs from what it sent"
        )
        assert len(set(keys)) == len(keys)
        for r in rows:
            path = data / r["store_key"]
            sent = dev.spool[(r["session"], r["seq"])]
            assert hashlib.sha256(path.read_bytes()).digest() == sent.sha256
    files = [p for p in (data / "frames").rglob("*") if p.is_file()]
    assert len(files) == sum(len(d.spool) for d in devices), "stray or duplicate frame files"


def test_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ctl = ControllerProcess(mosquitto.host, mosquitto.port, data)
    ctl.start()
    try:
        devs = [
            SimDevice(mosquitto.host, mosquitto.port, unique_id("k9")).connect() for _ in range(3)
        ]
        per_device = 150
        started = threading.Event()

        def stream(dev: SimDevice) -> None:
            for i in range(per_device):
                dev.publish_frame(dev.make_frame(size=4000 + 37 * i))
                if i == 20:
                    started.set()

        threads = [threading.Thread(target=stream, args=(d,)) for d in devs]
        for t in threads:
            t.start()
        assert started.wait(60)
        # Kill as soon as the controller has receipted something: mid-stream by construction.
        assert devs[0].wait_until(lambda: len(devs[0].receipted) >= 5, 60)
        ctl.kill9()
        for t in threads:
            t.join(30)
        ctl.start()
        # A device also replays its spool (frames not yet receipted), as after its own outage:
        # the replays overlap what the broker redelivers, and dedup must absorb both.
        devs[1].replay_spool()
        for dev in devs:
            assert dev.wait_receipted(timeout=60), f"{dev.device_id}: not all frames receipted"
        ctl.stop()
        assert_stored_exactly_once(data, devs)
        for dev in devs:
            dev.disconnect()
    finally:
        ctl.stop()


def test_broker_restart_with_persistence(mosquitto: Mosquitto, tmp_path: Path, controllers) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    ctl = controllers(data)
    waiter = Waiter(ctl)
    devs = [SimDevice(mosquitto.host, mosquitto.port, unique_id("br")).connect() for _ in range(2)]
    for dev in devs:
        dev.send_frames(40, size=3000)
    mosquitto.stop()  # clean stop: the broker saves sessions and queued messages
    for dev in devs:
        dev.send_frames(20, size=3000)  # queued in the device's client meanwhile
    mosquitto.start()
    for dev in devs:
        assert dev.connected.wait(60)
        assert dev.wait_receipted(timeout=60), f"{dev.device_id}: not all frames receipted"
    assert waiter.wait_for(lambda: len(frame_rows(data)) == 120, 10)
    assert ctl.store.flush(30)  # files are written behind the frame log
    assert_stored_exactly_once(data, devs)
    assert ctl.metrics.total("frames_stored_total") == 120
    for dev in devs:
        dev.disconnect()


_NO_FILES = '''\
"""Test hook: the controller never writes frame files (they stay in the frame log only)."""
import threading

from camfleet.controller.frames import store as frame_store


def _never(self, item):
    threading.Event().wait()


frame_store.LocalFrameStore._write_one = _never
'''


def test_kill_9_between_ack_and_file_creation_still_ends_with_the_file(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Files are written behind the ack, from the fsynced frame log: a controller killed after
    receipting frames whose files do not exist yet replays them into files at its next start."""
    data = tmp_path / "data"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_NO_FILES)
    stalled = ControllerProcess(mosquitto.host, mosquitto.port, data, PYTHONPATH=str(hook))
    stalled.start()
    dev = SimDevice(mosquitto.host, mosquitto.port, unique_id("behind")).connect()
    try:
        dev.send_frames(30, size=5000)
        assert dev.wait_receipted(timeout=30)  # acknowledged and receipted: durable
        assert len(frame_rows(data, dev.device_id)) == 30
        assert not (data / "frames").exists() or not any(
            p.is_file() for p in (data / "frames").rglob("*")
        ), "the hook should have kept every file from being written"
        assert list((data / "frame-log").glob("*/*.seg")), "the bytes must be in the frame log"
        stalled.kill9()
        restarted = ControllerProcess(mosquitto.host, mosquitto.port, data)
        restarted.start()  # replays the frame log into files before it comes online
        assert_stored_exactly_once(data, [dev])
        restarted.stop()
        assert not list((data / "frame-log").glob("*/*.seg")), "replayed segments are deleted"
    finally:
        stalled.stop()
        dev.disconnect()
