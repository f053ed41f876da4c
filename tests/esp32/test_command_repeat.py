"""A repeated Command id runs once on the node and is acked again every time it arrives."""

from __future__ import annotations

from camfleet.proto.v1 import command_pb2

_CAPTURE = command_pb2.Command(id="cmd-twice", capture=command_pb2.CaptureNow(count=1))


def test_repeated_command_id_captures_once_and_is_acked_again(mosquitto, make_device, receiver_for):
    """Catches a node that drops a repeated id without an ack (the ack the controller waits for
    may be the one that was lost), that runs it again (two captures), or that forgets the status
    it acked across deep sleep."""
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    assert dev.run_wake().ended == "deepsleep"
    rx.send_command(_CAPTURE)
    rx.send_command(_CAPTURE)  # e.g. the controller published again after a birth

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    rx.wait_for(lambda g: len(g.acks) >= 2, what="an ack for each delivery")
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
    rx.wait_for(lambda g: len(g.acks) >= 3, what="the third ack")
    last = [a for a in rx.of("ack") if a.command_id == "cmd-twice"][-1]
    assert (last.status, last.detail) == (
        command_pb2.ACK_STATUS_DONE,
        "repeated command id: not run again",
    )
    assert len([f for f in rx.frames.values() if f.command_id == "cmd-twice"]) == 1
    assert not rx.errors
