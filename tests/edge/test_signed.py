"""Receipts, commands and desired config must carry the device's signature: forged ones,
published by an identity the broker lets through (here: an anonymous client on a dev broker,
as a misconfigured ACL would), are refused and reported; nothing is deleted or changed."""

from __future__ import annotations

import time

from camfleet.proto import codec, signing
from camfleet.proto.receipts import make_receipt
from camfleet.proto.topics import Kind, group_cmd_topic
from camfleet.proto.v1 import command_pb2, config_pb2, frame_pb2, state_pb2
from tests.edge.conftest import agent_config
from tests.proto.mqtt_helpers import publish

KEY = bytes(range(32))
A = command_pb2


def test_forged_receipt_command_and_desired_are_refused(
    mosquitto, tmp_path, device_id, run_agent, receiver_for
):
    rx = receiver_for(mosquitto, device_id, receipts=False, device_key=KEY)
    running = run_agent(
        agent_config(tmp_path, mosquitto, device_id, device={"key": KEY.hex(), "groups": ["g"]})
    )
    agent = running.agent
    rx.wait_for(lambda g: any(s.presence == state_pb2.PRESENCE_ONLINE for s in g.states))
    frame: frame_pb2.Frame = agent.capture()
    rx.wait_for(lambda g: (frame.session, frame.seq) in g.frames, what="frame")
    assert agent.spool.depth == 1

    receipt = codec.encode(
        make_receipt([(frame.session, frame.seq)], int(time.time() * 1000), frame.incarnation)
    )
    shrink = codec.encode(
        A.Command(
            id="forged-1",
            issued_at_ms=int(time.time() * 1000),
            set_config=A.SetConfig(config=config_pb2.DeviceConfig(spool_max_frames=1)),
        )
    )
    desired = codec.encode(
        config_pb2.Desired(version=99, config=config_pb2.DeviceConfig(spool_max_frames=1))
    )
    wrong_key = bytes(32)
    forged = [
        (rx.topic(Kind.RECEIPT), receipt),  # unsigned
        (rx.topic(Kind.RECEIPT), signing.sign(wrong_key, Kind.RECEIPT, device_id, receipt)),
        # a genuine signature for another device, or for another kind, replayed here
        (rx.topic(Kind.RECEIPT), signing.sign(KEY, Kind.RECEIPT, "other-dev", receipt)),
        (rx.topic(Kind.RECEIPT), signing.sign(KEY, Kind.DESIRED, device_id, receipt)),
        (rx.topic(Kind.CMD), shrink),
        (group_cmd_topic("g"), shrink),  # group topics carry nothing signed for one device
        (rx.topic(Kind.DESIRED), desired),
        # a valid signature with bytes appended after it
        (rx.topic(Kind.RECEIPT), signing.sign(KEY, Kind.RECEIPT, device_id, receipt) + b"\x10\x01"),
    ]
    publish(mosquitto.host, mosquitto.port, [(t, p, False) for t, p in forged])
    rx.wait_for(
        lambda g: sum(e.type == "signature_refused" for e in g.events) == len(forged),
        what="one refusal event per forged message",
    )
    assert agent.counters["unsigned_refused"] == len(forged)
    assert agent.spool.depth == 1  # nothing deleted
    assert agent.desired.version == 0  # nothing applied
    assert agent.effective.spool_max_frames != 1
    assert not [a for a in rx.got.acks if a.command_id == "forged-1"]  # not even acked

    # The genuine, signed path works: a command is obeyed, a receipt deletes the frame.
    rx.command("real-1", capture=A.CaptureNow())
    assert rx.wait_ack("real-1").status == A.ACK_STATUS_DONE
    rx.send(
        Kind.RECEIPT,
        make_receipt([(frame.session, frame.seq)], int(time.time() * 1000), frame.incarnation),
    )
    assert agent.wait_until(lambda: (frame.session, frame.seq) not in agent.spool, 60)
