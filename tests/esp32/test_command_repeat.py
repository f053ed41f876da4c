"""A repeated Command id runs once on the node and is acked again every time it arrives."""

from __future__ import annotations

from camfleet.proto.v1 import command_pb2, common_pb2, config_pb2, state_pb2

_CAPTURE = command_pb2.Command(id="cmd-twice", capture=command_pb2.CaptureNow(count=1))


def test_repeated_command_id_captures_once_and_is_acked_again(mosquitto, make_device, receiver_for):
    """Catches a node that drops a repeated id without an ack (the ack the controller waits for
    may be the one that was lost), that runs it again (two captures), or that forgets the status
    it acked across deep sleep; and, in the same wake, a capture whose impossible size is not
    refused, and a command without id that is not reported."""
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    assert dev.run_wake().ended == "deepsleep"
    rx.send_command(_CAPTURE)
    rx.send_command(_CAPTURE)  # e.g. the controller published again after a birth
    odd_size = common_pb2.CameraSettings(width=123, height=45)
    rx.send_command(
        command_pb2.Command(id="cmd-odd", capture=command_pb2.CaptureNow(overrides=odd_size))
    )
    rx.send_command(command_pb2.Command(reannounce={}))  # no id: nothing to ack it with

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    rx.wait_for(lambda g: len(g.acks) >= 3, what="an ack for each delivery")
    odd = [(a.status, a.detail) for a in rx.of("ack") if a.command_id == "cmd-odd"]
    assert odd == [(command_pb2.ACK_STATUS_REJECTED, "no OV2640 framesize 123x45")]
    assert [e.message for e in rx.of("event") if e.type == "command_rejected"] == [
        "command without id"
    ]
    acks = [(a.status, a.detail) for a in rx.of("ack") if a.command_id == "cmd-twice"]
    # the repeat arrives while the first is still queued: acked as in progress, then DONE
    assert acks == [
        (command_pb2.ACK_STATUS_ACCEPTED, "repeated command id: in progress"),
        (command_pb2.ACK_STATUS_DONE, ""),
    ], woke.output
    captured = [f for f in rx.frames.values() if f.command_id == "cmd-twice"]
    assert len(captured) == 1

    rx.send_command(_CAPTURE)  # once more, after a deep sleep: RTC memory remembers it
    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    rx.wait_for(lambda g: len(g.acks) >= 4, what="the ack of the third delivery")
    last = [a for a in rx.of("ack") if a.command_id == "cmd-twice"][-1]
    assert (last.status, last.detail) == (
        command_pb2.ACK_STATUS_DONE,
        "repeated command id: not run again",
    )
    assert len([f for f in rx.frames.values() if f.command_id == "cmd-twice"]) == 1
    assert not rx.errors


def test_set_config_and_burst_bounds(mosquitto, make_device, receiver_for):
    """Catches a set_config that is acked but not persisted or reported, an invalid one that is
    not refused, a capture count that is not bounded to 1..10 (0 means one frame), and a
    re-announce that does not publish the birth, the reported state and telemetry again."""
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    assert dev.run_wake().ended == "deepsleep"
    good = config_pb2.DeviceConfig()
    good.schedule.interval_s = 45
    bad = config_pb2.DeviceConfig(max_payload=100)
    for cid, action in [
        ("cfg-bad", {"set_config": command_pb2.SetConfig(config=bad)}),
        ("cfg-good", {"set_config": command_pb2.SetConfig(config=good)}),
        ("zero", {"capture": command_pb2.CaptureNow(count=0)}),
        ("many", {"capture": command_pb2.CaptureNow(count=11)}),
        ("again", {"reannounce": command_pb2.Reannounce()}),
    ]:
        rx.send_command(command_pb2.Command(id=cid, **action))

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    rx.wait_for(lambda g: len(g.acks) >= 5, what="five acks")
    acks = {a.command_id: (a.status, a.detail) for a in rx.of("ack")}
    assert acks["cfg-bad"] == (command_pb2.ACK_STATUS_REJECTED, "max_payload 100 below 4096")
    assert acks["cfg-good"][0] == command_pb2.ACK_STATUS_DONE
    assert config_pb2.DeviceConfig.FromString(dev.read_nvs()["cfg"]).schedule.interval_s == 45
    assert rx.of("reported")[-1].config.schedule.interval_s == 45
    assert acks["again"][0] == command_pb2.ACK_STATUS_DONE
    births = [s for s in rx.of("state") if s.presence == state_pb2.PRESENCE_ONLINE]
    assert [b.session for b in births] == [1, 2, 2]  # the wake's birth, then the re-announce
    assert [r.session for r in rx.of("reported")].count(2) >= 2  # set_config's, re-announce's
    # the wake's telemetry, then the re-announce's
    assert [t.session for t in rx.of("telemetry")].count(2) == 2
    per_command = [f.command_id for f in rx.frames.values()]
    assert (per_command.count("zero"), per_command.count("many")) == (1, 10)


def test_a_handler_that_raises_is_acked_failed_and_the_wake_goes_on(
    mosquitto, make_device, receiver_for
):
    """A set_config whose NVS write fails (the partition full: host fault ``nvs_full:cfg``)
    raises inside its handler. Catches the handler's exception not acked FAILED with
    "action: error" (esp32_commands #21: the controller would wait for an ack that never comes)
    and an exception that ends the wake or the commands after it."""
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    assert dev.run_wake().ended == "deepsleep"
    dev.set_fault("nvs_full:cfg", 1)
    first = config_pb2.DeviceConfig()
    first.schedule.interval_s = 45
    second = config_pb2.DeviceConfig()
    second.schedule.interval_s = 50
    rx.send_command(
        command_pb2.Command(id="cfg-full", set_config=command_pb2.SetConfig(config=first))
    )
    rx.send_command(
        command_pb2.Command(id="cfg-next", set_config=command_pb2.SetConfig(config=second))
    )

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    # one connection, handled in order: once the second ack is here the first one is too
    rx.wait_for(lambda g: any(a.command_id == "cfg-next" for a in g.acks), what="the second ack")
    acks = [(a.command_id, a.status, a.detail) for a in rx.of("ack")]
    assert acks == [
        (
            "cfg-full",
            command_pb2.ACK_STATUS_FAILED,
            # MicroPython's text of OSError(-esp_err_t, name), as esp32_nvs.c raises it
            "set_config: (-4357, 'ESP_ERR_NVS_NOT_ENOUGH_SPACE')",
        ),
        ("cfg-next", command_pb2.ACK_STATUS_DONE, ""),
    ], woke.output
    assert config_pb2.DeviceConfig.FromString(dev.read_nvs()["cfg"]).schedule.interval_s == 50
