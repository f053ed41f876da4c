"""The contract across real brokers: every kind crosses mosquitto and amqtt with paho and
aiomqtt, retained kinds behave as retained, the will fires on an unclean disconnect, and garbage
on every topic gives the documented error while good messages in between still decode."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import aiomqtt
import paho.mqtt.client as mqtt
import pytest

from camfleet.proto import codec, topics
from camfleet.proto.errors import ContractError, Reason
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import config_pb2, state_pb2
from tests.proto.mqtt_helpers import Subscriber, publish
from tests.proto.samples import SAMPLES


def unique_device() -> str:
    return f"dev-{uuid.uuid4().hex[:10]}"


def test_every_kind_crosses_the_broker_with_paho(any_broker) -> None:  # type: ignore[no-untyped-def]
    device = unique_device()
    sub = Subscriber(any_broker.host, any_broker.port, [f"camfleet/v1/{device}/#"])
    try:
        items = [
            (topics.device_topic(device, k), codec.encode(m), False) for k, m in SAMPLES.items()
        ]
        publish(any_broker.host, any_broker.port, items)
        got = {}
        for _ in items:
            msg = sub.get()
            parsed, decoded = codec.decode_message(msg.topic, msg.payload)
            got[parsed.kind] = decoded.message
    finally:
        sub.close()
    assert got == SAMPLES


def test_every_kind_crosses_the_broker_with_aiomqtt(any_broker) -> None:  # type: ignore[no-untyped-def]
    device = unique_device()

    async def run() -> dict[Kind, object]:
        got: dict[Kind, object] = {}
        async with aiomqtt.Client(any_broker.host, any_broker.port) as sub:
            await sub.subscribe(f"camfleet/v1/{device}/#", qos=1)
            async with aiomqtt.Client(any_broker.host, any_broker.port) as pub:
                for kind, message in SAMPLES.items():
                    await pub.publish(
                        topics.device_topic(device, kind), codec.encode(message), qos=1
                    )
            async with asyncio.timeout(15):
                async for msg in sub.messages:
                    assert isinstance(msg.payload, bytes)
                    parsed, decoded = codec.decode_message(str(msg.topic), msg.payload)
                    got[parsed.kind] = decoded.message
                    if len(got) == len(SAMPLES):
                        break
        return got

    assert asyncio.run(run()) == SAMPLES


def test_a_large_frame_crosses_as_chunks(any_broker) -> None:  # type: ignore[no-untyped-def]
    from camfleet.proto.chunking import Reassembler, split_frame
    from tests.proto.samples import sample_frame

    device = unique_device()
    frame = sample_frame(os.urandom(300_000))
    chunks = split_frame(frame)
    sub = Subscriber(any_broker.host, any_broker.port, [topics.device_filter(Kind.CHUNK, device)])
    try:
        publish(
            any_broker.host,
            any_broker.port,
            [(topics.device_topic(device, Kind.CHUNK), codec.encode(c), False) for c in chunks],
        )
        reassembler = Reassembler()
        result = None
        for _ in chunks:
            msg = sub.get()
            parsed, decoded = codec.decode_message(msg.topic, msg.payload)
            assert parsed.device_id is not None
            result = reassembler.add(parsed.device_id, decoded.message) or result  # type: ignore[arg-type]
    finally:
        sub.close()
    assert result == frame


@pytest.mark.parametrize("kind", [Kind.STATE, Kind.DESIRED, Kind.REPORTED])
def test_retained_kinds_reach_a_late_subscriber(any_broker, kind: Kind) -> None:  # type: ignore[no-untyped-def]
    device = unique_device()
    topic = topics.device_topic(device, kind)
    older = SAMPLES[kind].__class__()
    older.CopyFrom(SAMPLES[kind])
    if kind is Kind.STATE:
        older.session -= 1  # type: ignore[attr-defined]
    else:
        older.version -= 1  # type: ignore[attr-defined]
    publish(
        any_broker.host,
        any_broker.port,
        [(topic, codec.encode(older), True), (topic, codec.encode(SAMPLES[kind]), True)],
    )
    sub = Subscriber(any_broker.host, any_broker.port, [topic])  # subscribes after the publish
    try:
        msg = sub.get()
    finally:
        sub.close()
    assert msg.retain
    assert codec.decode(kind, msg.payload).message == SAMPLES[kind]  # the last one wins


def test_the_will_fires_with_the_same_session_on_an_unclean_disconnect(any_broker) -> None:  # type: ignore[no-untyped-def]
    device = unique_device()
    topic = topics.device_topic(device, Kind.STATE)
    session = 42
    birth = state_pb2.DeviceState(presence=state_pb2.PRESENCE_ONLINE, session=session)
    will = state_pb2.DeviceState(presence=state_pb2.PRESENCE_OFFLINE, session=session)
    sub = Subscriber(any_broker.host, any_broker.port, [topic])
    try:
        device_client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=device,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        device_client.will_set(topic, codec.encode(will), qos=1, retain=True)
        device_client.connect(any_broker.host, any_broker.port, keepalive=60)
        device_client.loop_start()
        device_client.publish(topic, codec.encode(birth), qos=1, retain=True).wait_for_publish(10)
        first = codec.decode(Kind.STATE, sub.get().payload).message
        # Power cut: the TCP connection ends without an MQTT DISCONNECT.
        device_client.loop_stop()
        sock = device_client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        second = codec.decode(Kind.STATE, sub.get().payload).message
    finally:
        sub.close()
    assert first == birth
    assert second == will and second.session == first.session  # type: ignore[attr-defined]


def test_garbage_on_every_topic_gives_the_documented_error_and_good_messages_survive(
    shared_mosquitto,  # type: ignore[no-untyped-def]
) -> None:
    device = unique_device()
    rnd = __import__("random").Random(7)
    items: list[tuple[str, bytes, bool]] = []
    expected_good = 0
    for kind in Kind:
        topic = topics.device_topic(device, kind)
        wrong = SAMPLES[Kind.TELEMETRY if kind is not Kind.TELEMETRY else Kind.FRAME]
        for payload in (rnd.randbytes(300), b"", b"\xff" * 10, codec.encode(wrong)):
            items.append((topic, payload, False))
        items.append((topic, codec.encode(SAMPLES[kind]), False))
        expected_good += 1
    items.append((f"camfleet/v1/{device}/nonsense", codec.encode(SAMPLES[Kind.FRAME]), False))
    sub = Subscriber(shared_mosquitto.host, shared_mosquitto.port, [f"camfleet/v1/{device}/#"])
    good, reasons = 0, set()
    try:
        publish(shared_mosquitto.host, shared_mosquitto.port, items)
        for _ in items:
            msg = sub.get()
            try:
                _, decoded = codec.decode_message(msg.topic, msg.payload)
            except ContractError as exc:
                reasons.add(exc.reason)
            else:
                good += 1
                assert decoded.message.ListFields()
    finally:
        sub.close()
    assert good == expected_good
    assert {Reason.BAD_TOPIC, Reason.EMPTY, Reason.WRONG_KIND, Reason.BAD_PROTOBUF} <= reasons


def test_desired_and_reported_versions_round_trip_through_mosquitto(shared_mosquitto) -> None:  # type: ignore[no-untyped-def]
    """The controller's retained desired (version 9) and the device's retained reported (version 9
    applied, or version 10 refused with its error) reach a late subscriber with their versions."""
    device = unique_device()
    config = config_pb2.DeviceConfig(schedule=config_pb2.CaptureSchedule(daily_times_s=[0, 43200]))
    desired = config_pb2.Desired(version=9, updated_at_ms=1_700_000_000_000, config=config)
    reported = config_pb2.Reported(version=9, applied_at_ms=1_700_000_000_500, config=config)
    refused = config_pb2.Reported(version=10, error="camera.jpeg_quality: 500 is outside 1..100")
    desired_topic = topics.device_topic(device, Kind.DESIRED)
    reported_topic = topics.device_topic(device, Kind.REPORTED)
    host, port = shared_mosquitto.host, shared_mosquitto.port
    publish(host, port, [(desired_topic, codec.encode(desired), True)])
    publish(host, port, [(reported_topic, codec.encode(reported), True)])
    got: dict[str, object] = {}
    sub = Subscriber(host, port, [desired_topic, reported_topic])
    try:
        for _ in range(2):
            msg = sub.get()
            assert msg.retain
            kind = topics.parse(msg.topic).kind
            got[kind.value] = codec.decode(kind, msg.payload).message
        # A later reported replaces the retained one: the refusal keeps its version and reason.
        publish(host, port, [(reported_topic, codec.encode(refused), True)])
        got_refused = codec.decode(Kind.REPORTED, sub.get().payload).message
    finally:
        sub.close()
    assert got["desired"] == desired and got["reported"] == reported
    assert got["desired"].version == got["reported"].version == 9  # type: ignore[attr-defined]
    assert list(got["reported"].config.schedule.daily_times_s) == [0, 43200]  # type: ignore[attr-defined]
    assert got_refused == refused and got_refused.version == 10  # type: ignore[attr-defined]
    assert got_refused.error.startswith("camera.jpeg_quality")  # type: ignore[attr-defined]
