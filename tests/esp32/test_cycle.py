"""A node boots under real MicroPython, talks to a real mosquitto, and sleeps; commands queued
while it sleeps are done and acked on its next wake."""

from __future__ import annotations

import hashlib

import pytest

from camfleet.proto.v1 import command_pb2, common_pb2, config_pb2, state_pb2
from tests.esp32.conftest import jpeg, node_config


def test_boot_birth_frame_telemetry_sleep(mosquitto, make_device, receiver_for):
    picture = jpeg(640, 480, seed=7)
    dev = make_device(mosquitto, jpegs={"640x480": [picture]})
    rx = receiver_for(mosquitto, dev)

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    assert 0 < woke.sleep_ms <= 300_000
    assert not rx.errors
    births = [s for s in rx.of("state") if s.presence == state_pb2.PRESENCE_ONLINE]
    assert len(births) == 1
    birth = births[0]
    assert birth.session == 1
    assert birth.firmware_version == "1.0.0"  # read from the app descriptor of ota_0
    assert birth.ota_slot == "ota_0"
    assert birth.wake_cause == common_pb2.WAKE_CAUSE_POWER_ON
    assert "ota" in birth.capabilities
    assert birth.info["mac"] == "240ac4000001" and birth.info["ip"] == "127.0.0.1"
    assert rx.of("state")[-1].presence == state_pb2.PRESENCE_ASLEEP
    frame = rx.frames[(1, 1)]
    assert frame.data == picture
    assert frame.sha256 == hashlib.sha256(picture).digest()
    assert (frame.width, frame.height) == (640, 480)
    assert frame.wake_cause == common_pb2.WAKE_CAUSE_POWER_ON
    assert not frame.historical
    assert frame.settings.jpeg_quality > 0
    assert int(frame.metadata["heap_free"]) > 0
    telemetry = rx.of("telemetry")
    assert len(telemetry) == 1 and telemetry[0].session == 1
    assert telemetry[0].temperature_c == pytest.approx((128 - 32) / 1.8, abs=0.01)
    assert telemetry[0].rssi_dbm == -61 and telemetry[0].heap_free > 0
    assert telemetry[0].spool_depth in (0, 1)
    assert rx.noncanonical == []  # byte-compatible with the generated classes
    # the receipt arrived within the awake window: the spool is empty again
    assert dev.spool_files() == []


def test_command_queued_while_asleep_runs_on_next_wake(mosquitto, make_device, receiver_for):
    dev = make_device(
        mosquitto, jpegs={"640x480": [jpeg(seed=1)], "320x240": [jpeg(320, 240, seed=3)]}
    )
    rx = receiver_for(mosquitto, dev)
    assert dev.run_wake().ended == "deepsleep"

    # the node is asleep: these wait in its persistent session on the broker
    rx.send_command(
        command_pb2.Command(
            id="cmd-capture-1",
            capture=command_pb2.CaptureNow(
                count=2,
                overrides=common_pb2.CameraSettings(width=320, height=240),
                metadata={"why": "test"},
            ),
        )
    )
    rx.send_command(command_pb2.Command(id="cmd-expired", expires_at_ms=1000, reannounce={}))
    rx.send_command(b"\xff\xff\xff")  # garbage: rejected with an event, never a crash
    rx.send_command(command_pb2.Command(id="cmd-no-action"))

    woke = dev.run_wake("timer")
    assert woke.ended == "deepsleep", woke.output

    rx.wait_for(lambda g: len(g.acks) >= 3, what="3 acks")
    acks = {a.command_id: a for a in rx.of("ack")}
    done = acks["cmd-capture-1"]
    assert done.status == command_pb2.ACK_STATUS_DONE, done.detail
    assert done.session == 2
    assert len(done.capture_ids) == 2
    by_cmd = [f for f in rx.frames.values() if f.command_id == "cmd-capture-1"]
    assert len(by_cmd) == 2
    assert {(f.width, f.height) for f in by_cmd} == {(320, 240)}
    assert by_cmd[0].metadata["why"] == "test"
    assert acks["cmd-expired"].status == command_pb2.ACK_STATUS_EXPIRED
    assert acks["cmd-no-action"].status == command_pb2.ACK_STATUS_REJECTED
    events = [e.type for e in rx.of("event")]
    assert "command_rejected" in events
    assert not rx.errors and rx.noncanonical == []


def test_desired_config_applied_persisted_and_reported(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto, config=node_config())
    rx = receiver_for(mosquitto, dev)
    desired = config_pb2.Desired(version=3)
    desired.config.schedule.interval_s = 45
    desired.config.sleep.awake_window_s = 1
    desired.config.camera.width = 320
    desired.config.camera.height = 240
    rx.set_desired(desired)

    woke = dev.run_wake()

    assert woke.ended == "deepsleep"
    assert woke.sleep_ms <= 45_000
    reported = rx.of("reported")
    assert reported and reported[-1].version == 3 and not reported[-1].error
    assert reported[-1].config.schedule.interval_s == 45
    nvs = dev.read_nvs()
    assert nvs["desired_ver"] == 3
    stored = config_pb2.DeviceConfig.FromString(nvs["cfg"])
    assert stored.schedule.interval_s == 45
    # the next wake runs with it without the broker's help: births carry the version
    woke = dev.run_wake()
    births = [s for s in rx.of("state") if s.presence == state_pb2.PRESENCE_ONLINE]
    assert births[-1].desired_version == 3
    assert rx.noncanonical == []  # Reported included
