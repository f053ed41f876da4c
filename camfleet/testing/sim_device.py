"""Simulated camfleet devices speaking the v1 contract through paho, for tests and the bench.

A SimDevice keeps a persistent session (clean_session=False, stable client id), publishes a
birth on every connect (session + 1) with a will carrying the same session, publishes frames
(whole or chunked), keeps every frame it sent until a receipt covers it (its "spool"), answers
commands with acks (EXPIRED past the command's expiry, without running it), and can go to
sleep (announce ASLEEP, disconnect) and wake (reconnect: the broker hands over what waited).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.proto import codec, topics
from camfleet.proto.chunking import split_frame
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, config_pb2, frame_pb2, state_pb2


def fake_jpeg(size: int, seed: int = 0) -> bytes:
    """Bytes shaped like a JPEG (SOI ... EOI) of exactly ``size`` bytes."""
    rnd = random.Random(seed)
    body = rnd.randbytes(max(size - 4, 0))
    return b"\xff\xd8" + body + b"\xff\xd9"


@dataclass
class ReceivedCommand:
    command: command_pb2.Command
    received_ms: int
    ran: bool


@dataclass
class SimDevice:
    host: str
    port: int
    device_id: str
    session: int = 0
    root: str = topics.DEFAULT_ROOT
    capabilities: tuple[str, ...] = ("jpeg", "chunks")
    groups: tuple[str, ...] = ()
    platform: str = "sim"
    #: The device's incarnation id (docs/protocol.md): frames, births and receipts carry it.
    incarnation: bytes = b""
    #: Called for a capture command that runs; default publishes one frame per count.
    on_capture: Callable[[SimDevice, command_pb2.Command], None] | None = None
    auto_ack: bool = True
    frame_size: int = 2048
    next_seq: int = 1
    spool: dict[tuple[int, int], frame_pb2.Frame] = field(default_factory=dict)
    receipted: set[tuple[int, int]] = field(default_factory=set)
    commands: list[ReceivedCommand] = field(default_factory=list)
    desired: list[config_pb2.Desired] = field(default_factory=list)
    #: (session, seq) -> time.time() of publication / of the first receipt covering it.
    sent_times: dict[tuple[int, int], float] = field(default_factory=dict)
    receipt_times: dict[tuple[int, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self.client: mqtt.Client | None = None
        self.connected = threading.Event()

    # --- connection ---------------------------------------------------------------------------

    def _state(self, presence: int, next_wake_ms: int = 0) -> bytes:
        return codec.encode(
            state_pb2.DeviceState(
                presence=presence,  # type: ignore[arg-type]
                session=self.session,
                incarnation=self.incarnation,
                timestamp_ms=int(time.time() * 1000),
                firmware_version="1.0.0",
                platform=self.platform,
                board="sim-board",
                capabilities=list(self.capabilities),
                next_wake_ms=next_wake_ms,
                groups=list(self.groups),
            )
        )

    def connect(self, timeout: float = 10.0) -> SimDevice:
        self.session += 1
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sim-{self.device_id}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(0.1, 2)  # type: ignore[arg-type]  # hinted int; floats work
        state_topic = topics.device_topic(self.device_id, Kind.STATE, self.root)
        client.will_set(state_topic, self._state(state_pb2.PRESENCE_OFFLINE), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *a: self.connected.clear()
        client.on_message = self._on_message
        self.client = client
        client.connect(self.host, self.port, keepalive=30)
        client.loop_start()
        if not self.connected.wait(timeout):
            raise TimeoutError(f"{self.device_id} could not connect")
        return self

    def _on_connect(self, client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        client.subscribe([(f, 1) for f in topics.device_filters(self.device_id, (), self.root)])
        client.publish(
            topics.device_topic(self.device_id, Kind.STATE, self.root),
            self._state(state_pb2.PRESENCE_ONLINE),
            qos=1,
            retain=True,
        )
        self.connected.set()

    def sleep(self, seconds: float = 3600) -> None:
        """Announce ASLEEP with the planned wake, then disconnect (the session stays)."""
        assert self.client is not None
        info = self.client.publish(
            topics.device_topic(self.device_id, Kind.STATE, self.root),
            self._state(state_pb2.PRESENCE_ASLEEP, int((time.time() + seconds) * 1000)),
            qos=1,
            retain=True,
        )
        info.wait_for_publish(5)
        self.disconnect()

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None
            self.connected.clear()

    wake = connect

    # --- frames -------------------------------------------------------------------------------

    def make_frame(
        self, size: int | None = None, data: bytes | None = None, **fields: Any
    ) -> frame_pb2.Frame:
        seq = self.next_seq
        self.next_seq += 1
        if data is None:
            data = fake_jpeg(
                size or self.frame_size, seed=hash((self.device_id, self.session, seq))
            )
        fields.setdefault("captured_at_ms", int(time.time() * 1000))
        fields.setdefault("incarnation", self.incarnation)
        frame = codec.make_frame(data, session=self.session, seq=seq, **fields)
        with self._cond:
            self.spool[(frame.session, frame.seq)] = frame
        return frame

    def publish_frame(self, frame: frame_pb2.Frame, qos: int = 1) -> mqtt.MQTTMessageInfo:
        assert self.client is not None
        self.sent_times.setdefault((frame.session, frame.seq), time.time())
        return self.client.publish(
            topics.device_topic(self.device_id, Kind.FRAME, self.root), codec.encode(frame), qos
        )

    def send_frames(
        self, count: int, size: int | None = None, **fields: Any
    ) -> list[frame_pb2.Frame]:
        frames = [self.make_frame(size, **fields) for _ in range(count)]
        for f in frames:
            self.publish_frame(f)
        return frames

    def publish_chunks(self, chunks: Iterable[frame_pb2.FrameChunk], qos: int = 1) -> None:
        assert self.client is not None
        topic = topics.device_topic(self.device_id, Kind.CHUNK, self.root)
        for chunk in chunks:
            self.client.publish(topic, codec.encode(chunk), qos)

    def chunks_of(self, frame: frame_pb2.Frame, max_payload: int) -> list[frame_pb2.FrameChunk]:
        return split_frame(frame, max_payload)

    def replay_spool(self) -> int:
        """Publish again, flagged historical, every frame no receipt has covered yet."""
        with self._cond:
            pending = [f for k, f in self.spool.items() if k not in self.receipted]
        for f in pending:
            replay = frame_pb2.Frame()
            replay.CopyFrom(f)
            replay.historical = True
            self.publish_frame(replay)
        return len(pending)

    def publish_raw(self, kind: str, payload: bytes, qos: int = 1) -> None:
        assert self.client is not None
        self.client.publish(f"{self.root}/v1/{self.device_id}/{kind}", payload, qos)

    # --- what the controller sends ------------------------------------------------------------

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        parsed = topics.parse(msg.topic, self.root)
        if parsed.kind is Kind.RECEIPT:
            receipt = codec.decode(Kind.RECEIPT, msg.payload).message
            assert isinstance(receipt, frame_pb2.Receipt)
            now = time.time()
            with self._cond:
                for r in receipt.stored:
                    if r.incarnation != self.incarnation:
                        continue  # another incarnation's frames with the same numbers
                    for seq in range(r.first_seq, r.last_seq + 1):
                        key = (r.session, seq)
                        if key in self.spool and key not in self.receipted:
                            self.receipted.add(key)
                            self.receipt_times[key] = now
                self._cond.notify_all()
        elif parsed.kind is Kind.CMD:
            self._command(codec.decode(Kind.CMD, msg.payload).message)  # type: ignore[arg-type]
        elif parsed.kind is Kind.DESIRED and msg.payload:
            desired = codec.decode(Kind.DESIRED, msg.payload).message
            assert isinstance(desired, config_pb2.Desired)
            with self._cond:
                self.desired.append(desired)
                self._cond.notify_all()
            self.report(desired.version)

    def report(self, version: int, error: str = "") -> None:
        if self.client is None:
            return
        self.client.publish(
            topics.device_topic(self.device_id, Kind.REPORTED, self.root),
            codec.encode(config_pb2.Reported(version=version, session=self.session, error=error)),
            qos=1,
            retain=True,
        )

    def _command(self, cmd: command_pb2.Command) -> None:
        now = int(time.time() * 1000)
        if any(c.command.id == cmd.id for c in self.commands):
            return  # duplicate delivery: devices deduplicate by id
        expired = bool(cmd.expires_at_ms) and now > cmd.expires_at_ms
        with self._cond:
            self.commands.append(ReceivedCommand(cmd, now, ran=not expired))
            self._cond.notify_all()
        if not self.auto_ack:
            return
        if expired:
            self.ack(cmd.id, command_pb2.ACK_STATUS_EXPIRED, "arrived after its expiry")
            return
        self.ack(cmd.id, command_pb2.ACK_STATUS_ACCEPTED)
        capture_ids = []
        if cmd.WhichOneof("action") == "capture":
            if self.on_capture is not None:
                self.on_capture(self, cmd)
            else:
                for _ in range(max(cmd.capture.count, 1)):
                    f = self.make_frame(command_id=cmd.id)
                    self.publish_frame(f)
                    capture_ids.append(f.capture_id)
        self.ack(cmd.id, command_pb2.ACK_STATUS_DONE, capture_ids=capture_ids)

    def ack(
        self, command_id: str, status: int, detail: str = "", capture_ids: list[str] | None = None
    ) -> None:
        assert self.client is not None
        self.client.publish(
            topics.device_topic(self.device_id, Kind.ACK, self.root),
            codec.encode(
                command_pb2.Ack(
                    command_id=command_id,
                    status=status,  # type: ignore[arg-type]
                    detail=detail,
                    timestamp_ms=int(time.time() * 1000),
                    session=self.session,
                    capture_ids=capture_ids or [],
                )
            ),
            qos=1,
        )

    # --- waiting ------------------------------------------------------------------------------

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_receipted(
        self, keys: Iterable[tuple[int, int]] | None = None, timeout: float = 30.0
    ) -> bool:
        want = set(self.spool) if keys is None else set(keys)
        return self.wait_until(lambda: want <= self.receipted, timeout)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unique_id(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"
