"""Wake causes, resets and the commands that change the node's cycle."""

from __future__ import annotations

import time

from camfleet.proto import codec
from camfleet.proto.v1 import command_pb2, common_pb2, config_pb2, state_pb2
from tests.esp32.conftest import node_config


def _births(rx):
    return [s for s in rx.of("state") if s.presence == state_pb2.PRESENCE_ONLINE]


def test_ext0_wake_captures_a_motion_burst_and_arms_the_pin(mosquitto, make_device, receiver_for):
    cfg = config_pb2.DeviceConfig()
    cfg.sleep.ext0_pin = 13
    cfg.sleep.ext0_level = 1
    cfg.sleep.awake_window_s = 2
    cfg.schedule.motion_burst_count = 3
    dev = make_device(mosquitto, config=cfg.SerializeToString())
    rx = receiver_for(mosquitto, dev)
    first = dev.run_wake()
    assert first.armed == {"ext0": [13, 1]}

    woke = dev.run_wake("ext0")

    assert woke.ended == "deepsleep"
    burst = [f for f in rx.frames.values() if f.session == 2]
    assert len(burst) == 3
    assert {f.wake_cause for f in burst} == {common_pb2.WAKE_CAUSE_EXT0}
    assert {f.metadata["trigger"] for f in burst} == {"motion"}
    assert [e.type for e in rx.of("event")].count("motion") == 1


def test_check_only_timer_wake_captures_nothing(mosquitto, make_device, receiver_for):
    cfg = config_pb2.DeviceConfig()
    cfg.schedule.interval_s = 0  # no schedule: the timer only bounds the sleep
    cfg.sleep.max_sleep_s = 120
    dev = make_device(mosquitto, config=cfg.SerializeToString())
    rx = receiver_for(mosquitto, dev)
    assert dev.run_wake().sleep_ms == 120_000
    dev.run_wake("timer")
    assert sorted(rx.frames) == [(1, 1)]  # the power-on frame only
    assert len(_births(rx)) == 2


def test_session_survives_resets_and_the_will_carries_it(mosquitto, make_device, receiver_for):
    cfg = config_pb2.DeviceConfig()
    cfg.sleep.awake_window_s = 120
    cfg.camera.width, cfg.camera.height = 640, 480
    dev = make_device(mosquitto, config=codec.encode(cfg))
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()  # its frame is receipted: the wake ends early, long window or not
    # Without a receipt the second wake stays up for its 120 s window: the power cut below lands
    # mid-wake however slowly the test runs (a 2 s window ended first under a CPU hog).
    rx.receipts = False
    dev.start_wake()
    rx.wait_for(lambda g: len(_births(rx)) == 2, what="two births")
    dev.cut_power()  # mid-wake: no DISCONNECT, the broker publishes the will
    assert dev.wait_wake().ended == "power_cut"
    rx.receipts = True
    rx.wait_for(lambda g: g.states[-1].presence == state_pb2.PRESENCE_OFFLINE, what="the will")
    will = rx.of("state")[-1]
    assert will.session == _births(rx)[-1].session == 2
    dev.run_wake()
    assert _births(rx)[-1].session == 3
    assert _births(rx)[-1].wake_cause == common_pb2.WAKE_CAUSE_POWER_ON  # RTC memory was lost


def test_watchdog_resets_a_hung_wake(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto, extra_nvs={"wdt_ms": 1500})
    rx = receiver_for(mosquitto, dev)
    dev.set_fault("wifi_hang", 1)

    hung = dev.run_wake(timeout=30)

    assert hung.ended == "watchdog", hung.output
    woke = dev.run_wake()
    assert woke.ended == "deepsleep"
    birth = _births(rx)[-1]
    assert birth.wake_cause == common_pb2.WAKE_CAUSE_WATCHDOG
    assert birth.reset_reason == "watchdog"


def test_brownout_at_camera_start_is_reported_without_a_capture_loop(
    mosquitto, make_device, receiver_for
):
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    dev.set_fault("brownout", 1)
    assert dev.run_wake().ended == "power_cut"  # browned out while starting the camera

    woke = dev.run_wake()

    assert woke.ended == "deepsleep"
    assert _births(rx)[-1].wake_cause == common_pb2.WAKE_CAUSE_BROWNOUT
    assert "brownout" in [e.type for e in rx.of("event")]
    assert all(f.session != 3 for f in rx.frames.values())  # no camera start right after it


def test_wifi_failure_spools_the_frame(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    dev.set_fault("wifi", 1)
    woke = dev.run_wake()
    assert "wifi failed" in woke.output
    assert len(dev.spool_files()) == 1
    dev.run_wake()
    assert rx.frames[(1, 1)].historical
    assert dev.spool_files() == []


def test_group_command_reaches_member(mosquitto, make_device, receiver_for):
    # A node without a key (development): one with a key takes commands only on its own topic,
    # signed for it (the controller sends each member its own copy), see test_signed.py.
    dev = make_device(mosquitto, groups=("garden",), hmac_key=b"")
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    assert list(_births(rx)[-1].groups) == ["garden"]  # announced, so the controller knows
    cmd = command_pb2.Command(id="g1", group="garden", capture=command_pb2.CaptureNow(count=1))
    rx.client.publish(
        "camfleet/v1/_group/garden/cmd", cmd.SerializeToString(), qos=1
    ).wait_for_publish(5)
    dev.run_wake()
    assert {a.command_id: a.status for a in rx.of("ack")}["g1"] == command_pb2.ACK_STATUS_DONE


def test_stay_awake_keeps_the_node_up_for_live_commands(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto, config=node_config())
    rx = receiver_for(mosquitto, dev)
    desired = config_pb2.Desired(version=1)
    desired.config.stay_awake_until_ms = int(time.time() * 1000) + 60_000
    rx.set_desired(desired)

    dev.start_wake()
    rx.wait_for(lambda g: len(g.reported) == 1, what="reported")
    rx.send_command(command_pb2.Command(id="live", capture=command_pb2.CaptureNow(count=1)))
    rx.wait_for(lambda g: any(a.command_id == "live" for a in g.acks), what="ack of live")
    assert dev.proc is not None and dev.proc.poll() is None  # still awake after the command
    rx.send_command(
        command_pb2.Command(id="sleep-now", stay_awake=command_pb2.StayAwake(seconds=0))
    )

    woke = dev.wait_wake(timeout=20)

    assert woke.ended == "deepsleep"
    # the node had its PUBACK before sleeping; the receiver gets the ack through the broker after
    rx.wait_for(lambda g: any(a.command_id == "sleep-now" for a in g.acks), what="ack of sleep")
    acks = {a.command_id: a.status for a in rx.of("ack")}
    assert acks == {"live": command_pb2.ACK_STATUS_DONE, "sleep-now": command_pb2.ACK_STATUS_DONE}


def test_invalid_desired_config_is_refused_and_reported(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    desired = config_pb2.Desired(version=4)
    desired.config.camera.width = 1234
    desired.config.camera.height = 567
    rx.set_desired(desired)
    dev.run_wake()
    reported = rx.of("reported")[-1]
    assert reported.version == 4 and "1234x567" in reported.error
    assert "config_rejected" in [e.type for e in rx.of("event")]
    assert dev.read_nvs().get("desired_ver", 0) == 0


def test_low_battery_skips_the_camera_and_sleeps_long(mosquitto, make_device, receiver_for):
    cfg = config_pb2.DeviceConfig()
    cfg.sleep.low_battery_mv = 3500
    cfg.sleep.max_sleep_s = 7200
    cfg.sleep.awake_window_s = 2
    dev = make_device(mosquitto, config=cfg.SerializeToString(), extra_nvs={"bat_pin": 33})
    rx = receiver_for(mosquitto, dev)
    dev.set_fault("battery_mv", 3300)  # what the host ADC reads on the battery sense pin

    woke = dev.run_wake()

    assert woke.sleep_ms == 7_200_000
    assert rx.frames == {}
    assert "low_battery" in [e.type for e in rx.of("event")]
    assert rx.of("telemetry")[-1].battery_mv == 3300
    dev.set_fault("battery_mv", 4100)
    dev.run_wake()
    assert len(rx.frames) == 0  # a check wake: the timer was not for a capture
    telemetry = rx.of("telemetry")[-1]
    assert telemetry.battery_mv == 4100
    assert telemetry.awake_ms > 0  # the previous wake's length, from RTC memory


def test_ext1_wake_takes_a_motion_burst(mosquitto, make_device, receiver_for):
    cfg = config_pb2.DeviceConfig()
    cfg.sleep.ext1_pins.extend([2, 4])
    cfg.sleep.ext1_level = 1
    cfg.sleep.awake_window_s = 2
    cfg.schedule.motion_burst_count = 2
    dev = make_device(mosquitto, config=cfg.SerializeToString())
    rx = receiver_for(mosquitto, dev)
    assert dev.run_wake().armed == {"ext1": [[2, 4], 1]}

    dev.run_wake("ext1")

    causes = {}
    for f in rx.frames.values():
        causes.setdefault(f.session, []).append(f.wake_cause)
    assert causes[2] == [common_pb2.WAKE_CAUSE_EXT1] * 2  # a motion burst
    # touch and ULP wakes: tests/esp32/test_hardware.py (armed, then woken)


def test_set_config_reannounce_and_bad_capture_overrides(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    change = config_pb2.DeviceConfig(spool_max_frames=5)
    change.schedule.interval_s = 90
    rx.send_command(command_pb2.Command(id="cfg", set_config=command_pb2.SetConfig(config=change)))
    bad = common_pb2.CameraSettings(jpeg_quality=0, width=999, height=1)
    rx.send_command(command_pb2.Command(id="bad", capture=command_pb2.CaptureNow(overrides=bad)))
    rx.send_command(command_pb2.Command(id="hello", reannounce=command_pb2.Reannounce()))

    woke = dev.run_wake()

    acks = {a.command_id: a for a in rx.of("ack")}
    assert acks["cfg"].status == command_pb2.ACK_STATUS_DONE
    assert acks["bad"].status == command_pb2.ACK_STATUS_REJECTED
    assert "999x1" in acks["bad"].detail
    assert acks["hello"].status == command_pb2.ACK_STATUS_DONE
    assert woke.sleep_ms <= 90_000
    assert rx.of("reported")[-1].config.schedule.interval_s == 90
    assert rx.of("reported")[-1].config.camera.width == 640  # merged, not replaced
    stored = config_pb2.DeviceConfig.FromString(dev.read_nvs()["cfg"])
    assert (stored.spool_max_frames, stored.schedule.interval_s) == (5, 90)
    assert len(_births(rx)) == 3  # two wakes + the re-announcement


def test_config_too_large_for_nvs_is_refused(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    change = config_pb2.DeviceConfig(extra={f"k{i}": "x" * 100 for i in range(50)})
    rx.send_command(command_pb2.Command(id="huge", set_config=command_pb2.SetConfig(config=change)))
    dev.run_wake()
    ack = {a.command_id: a for a in rx.of("ack")}["huge"]
    assert ack.status == command_pb2.ACK_STATUS_REJECTED
    assert "NVS blob" in ack.detail
    assert dev.run_wake().ended == "deepsleep"  # and the old config still loads
