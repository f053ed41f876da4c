"""A controller stand-in for one device, shared by the ESP32 node tests and the edge agent tests.

It decodes every message the device publishes with ``camfleet.proto.codec`` (one that does not
decode lands in ``got.errors``, where the tests look) and checks that each is canonical (the
same bytes the generated classes would write; mismatches land in ``got.noncanonical``). Frames
are stored by (session, seq), chunked ones reassembled with ``Reassembler``, duplicates counted,
and each stored frame is receipted with ``make_receipt`` like the controller does, unless
receipts are off or the frame is in ``withhold`` (a lost store). Everything else is recorded by
kind. Waiting is on a Condition, never a sleep. Subclasses add behaviour per message through
:meth:`DeviceReceiver.handle` (the ESP32 tests serve OTA blocks that way).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.proto import codec, signing, topics
from camfleet.proto.chunking import Reassembler
from camfleet.proto.errors import ContractError
from camfleet.proto.receipts import make_receipt
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, config_pb2, frame_pb2, state_pb2


@dataclass
class Received:
    """What the device sent, in arrival order."""

    frames: dict[tuple[int, int], frame_pb2.Frame] = field(default_factory=dict)
    order: list[tuple[int, int]] = field(default_factory=list)  # first arrivals
    duplicates: int = 0
    arrivals: list[frame_pb2.Frame] = field(default_factory=list)  # every copy, without data
    by_kind: dict[str, list[Any]] = field(default_factory=lambda: {k.value: [] for k in Kind})
    latest_jpeg: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    noncanonical: list[str] = field(default_factory=list)

    @property
    def states(self) -> list[state_pb2.DeviceState]:
        return self.by_kind[Kind.STATE.value]

    @property
    def acks(self) -> list[command_pb2.Ack]:
        return self.by_kind[Kind.ACK.value]

    @property
    def reported(self) -> list[config_pb2.Reported]:
        return self.by_kind[Kind.REPORTED.value]

    @property
    def events(self) -> list[Any]:
        return self.by_kind[Kind.EVENT.value]

    @property
    def telemetry(self) -> list[Any]:
        return self.by_kind[Kind.TELEMETRY.value]


class DeviceReceiver:
    """Subscribes to one device's topics (persistent session, automatic reconnect)."""

    def __init__(
        self,
        host: str,
        port: int,
        device_id: str,
        *,
        root: str = topics.DEFAULT_ROOT,
        client_id: str | None = None,
        receipts: bool = True,
        controller_birth: bool = False,
        retain_birth: bool = False,
        jpeg_prefix: str = "camfleet/jpeg",
        username: str | None = None,
        password: str | None = None,
        device_key: bytes = b"",
    ) -> None:
        self.host, self.port, self.device_id, self.root = host, port, device_id, root
        self.client_id = client_id or f"test-receiver-{device_id}"
        self.receipts = receipts
        # Like the controller: with the device's key, receipts, commands and desired are signed.
        self.device_key = device_key
        self.controller_birth = controller_birth
        self.retain_birth = retain_birth
        self.jpeg_topic = f"{jpeg_prefix}/{device_id}"
        self.sync_topic = f"{root}/v1/_test/{device_id}/sync"
        self.withhold: set[tuple[int, int]] = set()  # frames never receipted (a lost store)
        #: withhold the first frame that arrives from now on (decided here, on arrival, so a
        #: test does not race the device to name it)
        self.withhold_next_arrival = False
        self.got = Received()
        self.cond = threading.Condition()
        self.reassembler = Reassembler(timeout_s=600)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]  # hinted int; floats work
        self._synced = threading.Event()
        self._sync_sent = 0  # barrier tokens: see sync()
        self._sync_seen = 0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> DeviceReceiver:
        """Connect; return once the broker has processed the subscriptions."""
        self._synced.clear()
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        if not self._synced.wait(timeout):
            raise RuntimeError(f"receiver for {self.device_id} could not connect")
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        sock = client.socket()
        if isinstance(sock, socket.socket):
            # a receipt right after a PUBACK would otherwise wait for the delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        filters = [topics.device_topic(self.device_id, k, self.root) for k in Kind]
        filters += [self.jpeg_topic, self.sync_topic]
        client.subscribe([(f, 1) for f in filters])
        # A sync point: this message comes back only after the broker processed the SUBSCRIBE.
        client.publish(self.sync_topic, b"", qos=1)
        if self.controller_birth:
            # Like the controller: a birth after every connect. Not retained unless asked
            # (``retain_birth``, like the real controller's), so tests sharing a broker do not
            # see each other's.
            birth = state_pb2.ControllerState(
                presence=state_pb2.PRESENCE_ONLINE,
                instance_id=self.client_id,
                timestamp_ms=int(time.time() * 1000),
            )
            client.publish(
                topics.controller_state_topic(self.root),
                codec.encode(birth),
                qos=1,
                retain=self.retain_birth,
            )

    # --- what the device sends ----------------------------------------------------------------

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == self.sync_topic:
            with self.cond:
                if msg.payload:
                    self._sync_seen = max(self._sync_seen, int(msg.payload))
                self.cond.notify_all()
            self._synced.set()
            return
        if msg.topic == self.jpeg_topic:
            with self.cond:
                self.got.latest_jpeg.append(bytes(msg.payload))
                self.cond.notify_all()
            return
        try:
            kind = topics.parse(msg.topic, self.root).kind
        except ContractError as exc:
            self._error(f"{msg.topic}: {exc}")
            return
        if kind in topics.CONTROLLER_TO_DEVICE or not msg.payload:
            return  # our own messages to the device, or a cleared retained topic
        try:
            message = codec.decode(kind, msg.payload).message
        except ContractError as exc:
            self._error(f"{msg.topic}: {exc}")
            return
        frame = None
        if kind is Kind.FRAME:
            assert isinstance(message, frame_pb2.Frame)
            frame = message
        elif kind is Kind.CHUNK:
            assert isinstance(message, frame_pb2.FrameChunk)
            frame = self.reassembler.add(self.device_id, message)
        self.handle(kind, message)
        with self.cond:
            if codec.encode(message) != msg.payload:
                self.got.noncanonical.append(f"{msg.topic}: {msg.payload.hex()}")
            self.got.by_kind[kind.value].append(message)
            if frame is not None:
                self._store(frame)
            self.cond.notify_all()

    def handle(self, kind: Kind, message: Any) -> None:
        """Called for every decoded message before it is recorded; subclasses override."""

    def _store(self, frame: frame_pb2.Frame) -> None:
        key = (frame.session, frame.seq)
        header = frame_pb2.Frame()
        header.CopyFrom(frame)
        header.ClearField("data")  # keep memory small: the data is in got.frames
        self.got.arrivals.append(header)
        if self.withhold_next_arrival:
            self.withhold_next_arrival = False
            self.withhold.add(key)
        if key in self.got.frames:
            self.got.duplicates += 1
        else:
            self.got.frames[key] = frame
            self.got.order.append(key)
        if self.receipts and key not in self.withhold:
            receipt = make_receipt([key], int(time.time() * 1000), frame.incarnation)
            payload = self.signed(Kind.RECEIPT, codec.encode(receipt))
            self.client.publish(self.topic(Kind.RECEIPT), payload, qos=1)

    def _error(self, text: str) -> None:
        with self.cond:
            self.got.errors.append(text)
            self.cond.notify_all()

    # --- views --------------------------------------------------------------------------------

    def sync(self, timeout: float = 15.0) -> None:
        """Wait until everything the broker accepted before this call has reached us.

        A device's QoS 1 publish is acknowledged to the device before the broker forwards it, so
        a wake can end before its last messages arrive here. mosquitto handles messages one at a
        time and queues them per subscriber in that order, so a message of ours published now
        comes back after all of them."""
        with self.cond:
            self._sync_sent += 1
            token = self._sync_sent
        self.client.publish(self.sync_topic, str(token).encode(), qos=1)
        deadline = time.monotonic() + timeout
        with self.cond:
            while self._sync_seen < token:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver for {self.device_id} could not sync")
                self.cond.wait(left)

    def of(self, kind: str) -> list[Any]:
        """A copy of the messages of ``kind`` (e.g. "ack") the broker had accepted by now."""
        self.sync()
        with self.cond:
            return list(self.got.by_kind[kind])

    @property
    def frames(self) -> dict[tuple[int, int], frame_pb2.Frame]:
        """The frames stored so far (after a sync, like ``of``)."""
        self.sync()
        return self.got.frames

    @property
    def duplicates(self) -> int:
        self.sync()
        return self.got.duplicates

    @property
    def errors(self) -> list[str]:
        return self.got.errors

    @property
    def noncanonical(self) -> list[str]:
        return self.got.noncanonical

    def wait_for(
        self, predicate: Callable[[Received], bool], timeout: float = 15.0, what: str = "condition"
    ) -> None:
        """Block until ``predicate(self.got)`` holds; AssertionError naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.got):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.summary()}")
                self.cond.wait(left)

    def summary(self) -> str:
        g = self.got
        return (
            f"{len(g.frames)} frames {g.order[-5:]}, {g.duplicates} dups, "
            f"{len(g.acks)} acks, {len(g.states)} states, errors {g.errors[:3]}"
        )

    # --- controller -> device -----------------------------------------------------------------

    def topic(self, kind: Kind) -> str:
        return topics.device_topic(self.device_id, kind, self.root)

    def send(self, kind: Kind, message: Any, retain: bool = False) -> None:
        """Publish a message (or raw bytes) on one of the device's topics; wait for PUBACK."""
        payload = message if isinstance(message, bytes) else codec.encode(message)
        payload = self.signed(kind, payload)
        self.client.publish(self.topic(kind), payload, qos=1, retain=retain).wait_for_publish(10)

    def signed(self, kind: Kind, payload: bytes) -> bytes:
        if not self.device_key or kind not in signing.SIGNED_KINDS or not payload:
            return payload
        return signing.sign(self.device_key, kind, self.device_id, payload)

    def send_command(self, cmd: command_pb2.Command | bytes) -> None:
        self.send(Kind.CMD, cmd)

    def set_desired(self, desired: config_pb2.Desired) -> None:
        self.send(Kind.DESIRED, desired, retain=True)

    def command(self, command_id: str, **action: Any) -> command_pb2.Command:
        cmd = command_pb2.Command(id=command_id, issued_at_ms=int(time.time() * 1000), **action)
        self.send_command(cmd)
        return cmd

    def wait_ack(
        self, command_id: str, final: bool = True, timeout: float = 15.0
    ) -> command_pb2.Ack:
        """The latest ack of ``command_id`` (with ``final``: the latest that is not ACCEPTED)."""
        accepted = command_pb2.ACK_STATUS_ACCEPTED

        def matches(a: command_pb2.Ack) -> bool:
            return a.command_id == command_id and (not final or a.status != accepted)

        self.wait_for(lambda g: any(matches(a) for a in g.acks), timeout, f"ack of {command_id}")
        with self.cond:
            return [a for a in self.got.acks if matches(a)][-1]
