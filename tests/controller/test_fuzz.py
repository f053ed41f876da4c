"""Fuzz: random bytes and wrong message kinds on every topic. The controller keeps running,
counts every refused message by reason, and still stores every good frame sent in between."""

from __future__ import annotations

import random

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.proto import codec
from camfleet.proto.topics import DEVICE_TO_CONTROLLER, Kind
from camfleet.proto.v1 import command_pb2, frame_pb2, state_pb2, telemetry_pb2
from camfleet.testing.controller_process import Waiter, frame_rows


def _wrong_kinds(rnd: random.Random) -> list[bytes]:
    frame = codec.make_frame(b"\xff\xd8abc\xff\xd9", session=1, seq=1)
    bad_sum = frame_pb2.Frame()
    bad_sum.CopyFrom(frame)
    bad_sum.sha256 = bytes(32)
    return [
        codec.encode(telemetry_pb2.Telemetry(timestamp_ms=1, battery_mv=3700)),
        codec.encode(frame),
        codec.encode(bad_sum),
        codec.encode(command_pb2.Ack(command_id="x", status=command_pb2.ACK_STATUS_DONE)),
        codec.encode(state_pb2.DeviceState(presence=state_pb2.PRESENCE_ONLINE, session=3)),
        codec.encode(telemetry_pb2.Event(type="motion")),
        codec.encode(frame_pb2.FrameChunk(session=1, seq=2, index=5, count=2, total_size=10)),
        codec.encode(
            frame_pb2.FrameChunk(
                session=1, seq=3, index=0, count=2, total_size=1 << 31, sha256=bytes(32), data=b"x"
            )
        ),
        b"\x08" * 7,
        b"\xff" * 64,
        b"\x0a\xff\xff\xff\xff\x0f",  # length-delimited field claiming 4 GB
        bytes(5 * 1024 * 1024),  # oversize
    ]


def test_fuzz_every_topic_while_good_frames_flow(controllers, devices, tmp_path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    ctl = controllers()
    waiter = Waiter(ctl)
    good = devices("good")
    rnd = random.Random(20261121)
    fuzzer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer")
    fuzzer.max_queued_messages_set(0)
    fuzzer.connect(mosquitto.host, mosquitto.port)
    fuzzer.loop_start()
    kinds = [k.value for k in Kind] + ["nonsense", "frame/extra"]
    owners = ["fuzzdev", "BAD-ID", "_group", "x" * 70, "_controller"]
    payloads = _wrong_kinds(rnd)
    received_expected = 0
    infos = []
    # Every wrong payload on every kind once, then random owners, kinds and bytes.
    plan = [("fuzzdev", k, p) for k in kinds for p in payloads]
    for _ in range(600):
        random_bytes = rnd.randbytes(rnd.randint(1, 300))
        payload = random_bytes if rnd.random() < 0.5 else rnd.choice(payloads)
        plan.append((rnd.choice(owners), rnd.choice(kinds), payload))
    for i, (owner, kind, payload) in enumerate(plan):
        infos.append(fuzzer.publish(f"camfleet/v1/{owner}/{kind}", payload, qos=1))
        # The controller subscribes to camfleet/v1/+/<device-to-controller kind>.
        if kind in {k.value for k in DEVICE_TO_CONTROLLER} and "/" not in owner:
            received_expected += 1
        if i % 20 == 0:
            good.publish_frame(good.make_frame(size=rnd.randint(500, 20_000)))
    for info in infos:
        info.wait_for_publish(10)
    good.send_frames(3)
    assert good.wait_receipted(timeout=30), "a good frame was lost among the fuzz"
    m = ctl.metrics

    def counted() -> float:
        return m.total("malformed_total") + m.total("messages_total") + m.total("unhandled_total")

    # Every fuzz message that reached the controller is accounted for (+ the good traffic).
    good_messages = len(good.spool) + 1  # frames + its birth
    ok = waiter.wait_for(lambda: counted() >= received_expected + good_messages, 20)
    assert ok, (counted(), received_expected + good_messages, m.snapshot())
    reasons = {dict(k)["reason"] for k in m.snapshot()["malformed_total"]}
    assert {"bad_protobuf", "wrong_kind", "checksum_mismatch", "bad_topic", "oversize"} <= reasons
    assert ctl.channel.connected.is_set()
    good_rows = frame_rows(tmp_path / "data", good.device_id)
    assert len(good_rows) == len(good.spool)
    # Still fully working afterwards.
    later = good.send_frames(1)[0]
    assert good.wait_receipted([(later.session, later.seq)], timeout=10)
    fuzzer.loop_stop()
    fuzzer.disconnect()
