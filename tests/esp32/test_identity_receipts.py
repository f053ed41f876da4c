"""The real MicroPython node: a wiped node loses nothing at a real controller (incarnation), and
no receipt can make it crash or delete what it did not send (issue 9, defects 1 and 6)."""

from __future__ import annotations

import itertools
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.esp32_node.tools.hostdevice import HostDevice
from camfleet.proto import codec, signing, topics
from camfleet.proto.v1 import frame_pb2
from camfleet.testing.controller_process import Waiter, frame_rows, start_controller
from tests.esp32.conftest import DEVICE_KEY, jpeg, node_config

_ids = itertools.count(1)


def _provision(path: Path, device_id: str, broker) -> HostDevice:  # type: ignore[no-untyped-def]
    dev = HostDevice(path, device_id)
    dev.provision(
        broker_host=broker.host,
        broker_port=broker.port,
        hmac_key=DEVICE_KEY,
        config=node_config(),
        jpegs=[jpeg(seed=1), jpeg(seed=2)],
    )
    return dev


def test_a_wiped_node_loses_nothing_at_the_controller(mosquitto, tmp_path):  # type: ignore[no-untyped-def]
    ctl = start_controller(mosquitto.url, tmp_path / "data")
    try:
        waiter = Waiter(ctl)
        device_id = f"wiped-{next(_ids)}"
        ctl.device_keys.put(device_id, DEVICE_KEY)  # the controller signs with it
        first = _provision(tmp_path / "first", device_id, mosquitto)
        for _ in range(2):
            assert first.run_wake().ended == "deepsleep"
        assert first.spool_files() == []
        first.cut_power()

        # NVS and flash erased, provisioned again: same device id, sessions start at 1 again,
        # the same scenes (same JPEGs).
        again = _provision(tmp_path / "again", device_id, mosquitto)
        for _ in range(2):
            assert again.run_wake().ended == "deepsleep"
        assert waiter.wait_for(lambda: len(frame_rows(tmp_path / "data", device_id)) == 4, 20)
        rows = frame_rows(tmp_path / "data", device_id)
        assert sorted((r["session"], r["seq"]) for r in rows) == [(1, 1), (1, 1), (2, 1), (2, 1)]
        assert len({r["incarnation"] for r in rows}) == 2
        assert ctl.metrics.total("frames_duplicate_total") == 0
        assert again.spool_files() == []  # receipted per incarnation, deleted
        incarnations = [first.read_nvs()["incarn"], again.read_nvs()["incarn"]]
        assert {r["incarnation"] for r in rows} == {i.hex() for i in incarnations}  # type: ignore[union-attr]
        again.cut_power()
    finally:
        ctl.stop()


def _publish(broker, topic: str, payloads: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    for p in payloads:
        client.publish(topic, p, qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_no_receipt_crashes_the_node_or_deletes_what_it_did_not_send(  # type: ignore[no-untyped-def]
    mosquitto, make_device, receiver_for
):
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    rx.receipts = False  # the controller never stored anything
    assert dev.run_wake().ended == "deepsleep"  # session 1: subscribed, frame 1-1 spooled
    rx.close()
    mosquitto.stop()  # two offline wakes: 2-1 and 3-1 spooled, never sent
    for _ in range(2):
        assert dev.run_wake().ended == "deepsleep"
    mosquitto.start()
    spooled = dev.spool_files()
    assert len(spooled) == 3
    incarnation = dev.read_nvs()["incarn"]
    assert isinstance(incarnation, bytes)
    huge = frame_pb2.Receipt(
        stored=[frame_pb2.SeqRange(session=1, first_seq=i, last_seq=i) for i in range(1, 2002)]
    )
    lies = frame_pb2.Receipt(
        stored=[
            frame_pb2.SeqRange(session=s, first_seq=1, last_seq=100, incarnation=incarnation)
            for s in range(1, 102)
        ][:30]
    )
    other = frame_pb2.Receipt(
        stored=[frame_pb2.SeqRange(session=s, first_seq=1, last_seq=9) for s in range(1, 9)]
    )
    # Waiting in the node's persistent session: delivered before it sends anything.
    topic = topics.device_topic(dev.device_id, topics.Kind.RECEIPT)
    # Signed with the node's key (a controller bug, not a forgery), so they reach the checks.
    signed = [
        signing.sign(DEVICE_KEY, topics.Kind.RECEIPT, dev.device_id, codec.encode(r))
        for r in (huge, lies, other)
    ]
    _publish(mosquitto, topic, signed)
    rx = receiver_for(mosquitto, dev)
    rx.receipts = False
    woke = dev.run_wake()
    assert woke.ended == "deepsleep", woke.output
    assert "Traceback" not in woke.output
    # Nothing was deleted: the receipts named frames it had not sent in this wake (or another
    # incarnation's), and the controller receipted nothing.
    assert set(spooled) <= set(dev.spool_files())
    assert len(dev.spool_files()) == 4
    refused = [e for e in rx.of("event") if e.type == "message_error" and "receipt" in e.message]
    assert len(refused) == 1, [e.message for e in rx.of("event")]
    # The frames did go out (replayed): a real receipt now deletes them.
    sent = {(f.session, f.seq) for f in rx.frames.values()}
    assert {(1, 1), (2, 1), (3, 1), (4, 1)} <= sent
    rx.close()
    rx = receiver_for(mosquitto, dev)  # receipts on
    assert dev.run_wake().ended == "deepsleep"
    assert dev.spool_files() == []
