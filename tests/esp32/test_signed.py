"""A node with a key acts only on receipts, commands and desired config signed with it.

The forgeries come from an identity the broker lets through (an anonymous client on this test
broker, as a misconfigured ACL would); each is refused with a ``signature_refused`` event and
nothing is deleted, obeyed or applied. The controller stand-in's signed messages still work.
"""

from __future__ import annotations

import time
from collections import Counter

from camfleet.proto import codec, signing
from camfleet.proto.receipts import make_receipt
from camfleet.proto.topics import Kind, group_cmd_topic
from camfleet.proto.v1 import command_pb2, config_pb2
from camfleet.testing.esp32_receiver import Receiver
from tests.esp32.conftest import DEVICE_KEY
from tests.proto.mqtt_helpers import publish


def test_forged_receipt_command_and_desired_are_refused(mosquitto, make_device):
    dev = make_device(mosquitto, groups=("yard",))
    rx = Receiver(
        mosquitto.host, mosquitto.port, dev.device_id, device_key=DEVICE_KEY, receipts=False
    ).start()
    try:
        woke = dev.run_wake()
        assert woke.ended == "deepsleep", woke.output
        spooled = dev.spool_files()
        assert len(spooled) == 1 and len(rx.frames) == 1  # sent, never receipted
        (stored,) = rx.frames

        receipt = codec.encode(
            make_receipt([stored], int(time.time() * 1000), rx.frames[stored].incarnation)
        )
        shrink = codec.encode(
            command_pb2.Command(
                id="forged-1",
                set_config=command_pb2.SetConfig(
                    config=config_pb2.DeviceConfig(spool_max_frames=1)
                ),
            )
        )
        desired = codec.encode(
            config_pb2.Desired(version=99, config=config_pb2.DeviceConfig(spool_max_frames=1))
        )
        me = dev.device_id
        forged = [
            (rx.topic(Kind.RECEIPT), receipt, False),  # unsigned
            (rx.topic(Kind.RECEIPT), signing.sign(bytes(32), Kind.RECEIPT, me, receipt), False),
            # genuine signatures made for another device, or for another kind
            (rx.topic(Kind.RECEIPT), signing.sign(DEVICE_KEY, Kind.RECEIPT, "x", receipt), False),
            (rx.topic(Kind.CMD), shrink, False),
            (rx.topic(Kind.CMD), signing.sign(DEVICE_KEY, Kind.RECEIPT, me, shrink), False),
            (group_cmd_topic("yard"), shrink, False),
            (rx.topic(Kind.DESIRED), desired, True),
        ]  # fmt: skip
        publish(mosquitto.host, mosquitto.port, forged)

        woke = dev.run_wake()
        assert woke.ended == "deepsleep", woke.output
        refused = [e for e in rx.of("event") if e.type == "signature_refused"]
        per_topic = Counter(e.message.split(" on ")[1].split(" ")[0] for e in refused)
        # The retained desired may arrive twice (queued in the session, and as retained).
        assert per_topic.pop(rx.topic(Kind.DESIRED)) in (1, 2), per_topic
        assert per_topic == Counter(t for t, _, retain in forged if not retain)
        assert set(spooled) <= set(dev.spool_files())  # nothing deleted
        assert not [a for a in rx.of("ack") if a.command_id == "forged-1"]  # nor obeyed
        assert not [r for r in rx.of("reported") if r.version == 99]  # nor applied

        # The genuine path works: the stand-in's signed receipts delete the frames it stores
        # this wake (the replayed one included); a signed command is obeyed.
        rx.receipts = True
        rx.command("real-1", capture=command_pb2.CaptureNow(count=1))
        rx.send(Kind.DESIRED, b"", retain=True)  # clear the forged retained desired
        woke = dev.run_wake()
        assert woke.ended == "deepsleep", woke.output
        assert spooled[0] not in dev.spool_files()
        acks = {a.command_id: a.status for a in rx.of("ack")}
        assert acks["real-1"] == command_pb2.ACK_STATUS_DONE
        assert len([e for e in rx.of("event") if e.type == "signature_refused"]) == len(refused)
    finally:
        rx.close()
