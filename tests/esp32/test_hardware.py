"""The node against the host port's hardware strictness (issue 11): what a real ESP32-CAM with
lemariva's camera driver and MicroPython v1.22.2 does, the node must survive and use right.
Each test names the defect it guards; each fails on the node code before issue 11."""

from __future__ import annotations

import hashlib
import json

from camfleet.proto.v1 import command_pb2, common_pb2, config_pb2, state_pb2
from tests.esp32.conftest import jpeg, node_config


def _births(rx):
    return [s for s in rx.of("state") if s.presence == state_pb2.PRESENCE_ONLINE]


def _events(rx, typ):
    return [e for e in rx.of("event") if e.type == typ]


def test_capture_returning_false_is_a_camera_error_not_a_crash(
    mosquitto, make_device, receiver_for
):
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    dev.set_fault("capture_fail", 1)  # one grab times out: the restart gets a frame
    first = dev.run_wake()
    assert first.ended == "deepsleep" and first.sleep_ms != 60000, first.output
    assert len(rx.frames) == 1
    assert "restarting the camera" in _events(rx, "camera_error")[0].message

    dev.set_fault("capture_fail", -1)  # a dead sensor: every grab fails
    rx.send_command(rx.command("snap", capture=command_pb2.CaptureNow()))
    woke = dev.run_wake()
    assert woke.ended == "deepsleep" and woke.sleep_ms != 60000, woke.output  # 60 s = crash
    assert not (dev.dir / "fs" / "crash.txt").exists()
    ack = rx.wait_ack("snap")
    assert ack.status == command_pb2.ACK_STATUS_FAILED and "capture_failed" in ack.detail
    assert len(rx.frames) == 1
    assert rx.of("telemetry")[-1].camera_status.startswith("capture_failed")


def test_camera_is_initialised_at_the_wanted_framesize(mosquitto, make_device, receiver_for):
    # a busy UXGA scene: far larger than the VGA buffer the driver's default init sizes
    big = jpeg(1600, 1200, seed=3, quality=60, noise=True)[:300_000]
    assert 640 * 480 // 5 < len(big) <= 1600 * 1200 // 5
    cfg = config_pb2.DeviceConfig()
    cfg.sleep.awake_window_s = 2
    cfg.camera.width, cfg.camera.height = 1600, 1200
    dev = make_device(mosquitto, config=cfg.SerializeToString(), jpegs={"1600x1200": [big]})
    rx = receiver_for(mosquitto, dev)
    woke = dev.run_wake()
    assert woke.ended == "deepsleep", woke.output
    (frame,) = rx.frames.values()
    assert frame.data == big and (frame.width, frame.height) == (1600, 1200)
    init = json.loads((dev.dir / "camera_init.json").read_text())
    assert init["framesize"] == 13 and init["fb_location"] == 0  # FRAME_UXGA, PSRAM


def test_larger_framesize_later_in_the_wake_reinitialises_the_camera(
    mosquitto, make_device, receiver_for
):
    big = jpeg(1600, 1200, seed=4, quality=60, noise=True)[:200_000]
    dev = make_device(mosquitto, jpegs={"640x480": [jpeg(seed=1)], "1600x1200": [big]})
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()  # the session exists from now on: commands wait for the node
    uxga = common_pb2.CameraSettings(width=1600, height=1200)
    rx.send_command(rx.command("big", capture=command_pb2.CaptureNow(overrides=uxga)))
    dev.run_wake()  # the scheduled frame at VGA, then the command at UXGA
    assert rx.wait_ack("big").status == command_pb2.ACK_STATUS_DONE
    sizes = sorted((f.width, len(f.data)) for f in rx.frames.values())
    assert sizes[-1] == (1600, len(big))


def test_t_camera_mini_lifts_the_pmu_usb_limit_and_runs_xclk_at_20mhz(
    mosquitto, make_device, receiver_for
):
    dev = make_device(mosquitto, board="t-camera-mini")
    (dev.dir / "i2c.json").write_text(json.dumps({"52": {"48": 0x63}}))  # AXP, limit on
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    assert len(rx.frames) == 1, dev.output
    assert json.loads((dev.dir / "i2c.json").read_text())["52"]["48"] == 0x60
    init = json.loads((dev.dir / "camera_init.json").read_text())
    assert init["xclk_freq"] == 20_000_000 and (init["xclk"], init["pclk"]) == (32, 19)


def test_frame_after_a_settings_change_is_exposed_with_the_new_settings(
    mosquitto, make_device, receiver_for
):
    # every grab a different JPEG (dropped frames included), so a hash names one exposure
    dev = make_device(mosquitto, jpegs=[jpeg(seed=s) for s in range(1, 13)])
    (dev.dir / "camera_frames.log").write_text("")
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    neg = common_pb2.CameraSettings(effect=common_pb2.EFFECT_NEGATIVE, brightness=100)
    rx.send_command(rx.command("neg", capture=command_pb2.CaptureNow(overrides=neg)))
    rx.send_command(rx.command("plain", capture=command_pb2.CaptureNow()))
    dev.run_wake()
    assert rx.wait_ack("plain").status == command_pb2.ACK_STATUS_DONE
    exposed = {}
    for line in (dev.dir / "camera_frames.log").read_text().splitlines():
        rec = json.loads(line)
        exposed[rec["sha256"]] = rec
    assert len(rx.frames) == 4
    for f in rx.frames.values():
        rec = exposed[hashlib.sha256(f.data).hexdigest()]
        assert rec["effect"] == (1 if f.settings.effect == common_pb2.EFFECT_NEGATIVE else 0)
        assert rec["brightness"] == f.settings.brightness // 50, (f.capture_id, rec)


def _desired(rx, version: int, **sleep: object) -> None:
    cfg = config_pb2.DeviceConfig()
    for k, v in sleep.items():
        if isinstance(v, list):
            getattr(cfg.sleep, k).extend(v)
        else:
            setattr(cfg.sleep, k, v)
    rx.set_desired(config_pb2.Desired(version=version, config=cfg))


def test_wake_pins_are_checked_when_the_config_is_applied(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    refused = [
        ({"ext0_pin": 16}, "GPIO 16 cannot"),  # not an RTC GPIO: cannot wake the chip
        ({"ext0_pin": 25}, "wired to the camera"),  # RTC GPIO, but the camera's VSYNC
        ({"ext1_pins": [13, 21]}, "GPIO 21 cannot"),
        ({"ext0_pin": 13, "touch_pin": 12, "touch_threshold": 300}, "cannot be combined"),
        ({"touch_pin": 26, "touch_threshold": 300}, "GPIO 26 cannot"),  # no touch pad
        ({"ulp_pin": 14}, "GPIO 14 cannot"),  # RTC channel 16: past the program's read
    ]
    for version, (sleep, why) in enumerate(refused, start=1):
        _desired(rx, version, **sleep)
        dev.run_wake()
        rep = rx.of("reported")[-1]
        assert rep.version == version and why in rep.error, (sleep, rep.error)
    # a refused retained version stays refused at every wake, with the same reason
    rejected = {e.attributes["version"] for e in _events(rx, "config_rejected")}
    assert rejected == {str(v) for v in range(1, len(refused) + 1)}
    assert dev.run_wake().armed == {}  # nothing refused was ever armed

    _desired(rx, 50, ext0_pin=13, ext1_pins=[2, 15])
    dev.run_wake()
    assert rx.of("reported")[-1].error == ""
    assert dev.run_wake().armed == {"ext0": [13, 1], "ext1": [[2, 15], 1]}


def test_touch_and_ulp_wakes_are_armed_and_reported(mosquitto, make_device, receiver_for):
    cfg = config_pb2.DeviceConfig()
    cfg.sleep.awake_window_s = 2
    cfg.sleep.touch_pin = 12
    cfg.sleep.touch_threshold = 400
    cfg.sleep.ulp_pin = 13
    cfg.sleep.ulp_pulses = 2
    cfg.sleep.ulp_period_ms = 50
    dev = make_device(mosquitto, config=cfg.SerializeToString())
    rx = receiver_for(mosquitto, dev)

    armed = dev.run_wake().armed
    assert armed["touch"] == {"12": 400}
    ulp = armed["ulp"]
    assert ulp["entry"] == 16 and ulp["period_us"] == 50_000 and ulp["addr"] == 0
    assert ulp["words"] == [1 << 14, 2, 0, 0]  # GPIO 13 is RTC channel 14; two pulses
    assert ulp["rtcio"] == {"3ff484a4": (1 << 19) | (1 << 13)}  # TOUCH_PAD4: mux + input

    dev.run_wake("touch")
    dev.run_wake("ulp")
    causes = {f.session: f.wake_cause for f in rx.frames.values()}
    assert causes[2] == common_pb2.WAKE_CAUSE_TOUCH
    assert causes[3] == common_pb2.WAKE_CAUSE_ULP
    assert [b.wake_cause for b in _births(rx)][1:] == [
        common_pb2.WAKE_CAUSE_TOUCH,
        common_pb2.WAKE_CAUSE_ULP,
    ]


def test_reboot_reports_hard_reset_and_is_not_read_as_power_on(
    mosquitto, make_device, receiver_for
):
    dev = make_device(mosquitto, config=node_config())
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    rx.send_command(rx.command("rb", reboot=command_pb2.Reboot()))
    assert dev.run_wake().ended == "hard"  # machine.reset() is esp_restart: HARD_RESET
    assert rx.wait_ack("rb").status == command_pb2.ACK_STATUS_DONE
    dev.run_wake()
    birth = _births(rx)[-1]
    assert birth.wake_cause == common_pb2.WAKE_CAUSE_SOFT_RESET and birth.reset_reason == "reboot"
    assert all(f.session != 3 for f in rx.frames.values())  # a requested restart: no frame
    frames_before = len(rx.frames)

    # a panic resets the same way, without the node's mark: a fresh start, one frame
    (dev.dir / "boot.json").write_text(json.dumps({"cause": "panic"}))
    dev.run_wake()
    birth = _births(rx)[-1]
    assert birth.wake_cause == common_pb2.WAKE_CAUSE_POWER_ON and birth.reset_reason == "panic"
    assert len(rx.frames) == frames_before + 1


def test_default_device_id_is_the_one_a_real_board_gets(mosquitto, make_device):
    dev = make_device(mosquitto)
    path = dev.dir / "nvs" / "camfleet.json"
    entries = json.loads(path.read_text())
    del entries["device_id"]
    path.write_text(json.dumps(entries))
    dev.run_wake()
    # unique_id() is the 6-byte MAC 24:0a:c4:00:00:01, not its text: 12 hex digits
    assert "[node esp32-240ac4000001]" in dev.output, dev.output
