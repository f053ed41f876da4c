"""A small controller stand-in for the edge tests: stores frames, sends receipts, records acks.

It decodes everything with camfleet.proto (so a frame the agent sends wrong fails the test),
reassembles chunks, keeps the first copy of each (session, seq) and counts duplicates, and
answers stored frames with receipts (camfleet.proto.receipts.make_receipt), like the controller.
Waiting is done on a Condition, never by sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.proto import codec
from camfleet.proto.chunking import Reassembler
from camfleet.proto.receipts import make_receipt
from camfleet.proto.topics import Kind, controller_state_topic, device_topic, parse
from camfleet.proto.v1 import command_pb2, config_pb2, frame_pb2, state_pb2


@dataclass
class Received:
    frames: dict[tuple[int, int], frame_pb2.Frame] = field(default_factory=dict)
    order: list[tuple[int, int]] = field(default_factory=list)  # first arrivals
    duplicates: int = 0
    arrivals: list[frame_pb2.Frame] = field(default_factory=list)  # every copy, dups included
    states: list[state_pb2.DeviceState] = field(default_factory=list)
    acks: list[command_pb2.Ack] = field(default_factory=list)
    reported: list[config_pb2.Reported] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    telemetry: list[Any] = field(default_factory=list)
    latest_jpeg: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Receiver:
    """Subscribes to one device's topics on a broker (persistent session, auto reconnect)."""

    def __init__(
        self,
        host: str,
        port: int,
        device_id: str,
        *,
        root: str = "camfleet",
        receipts: bool = True,
        client_id: str | None = None,
        controller_birth: bool = False,
    ) -> None:
        self.device_id = device_id
        self.root = root
        self.receipts = receipts
        self.controller_birth = controller_birth
        self.withhold: set[tuple[int, int]] = set()  # frames never receipted (a lost store)
        self.client_id = client_id or f"test-receiver-{device_id}"
        self.got = Received()
        self.cond = threading.Condition()
        self.reassembler = Reassembler()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-receiver-{device_id}",
            clean_session=False,
            protocol=paho.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.2)
        self._subscribed = threading.Event()
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "receiver did not connect"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        topics = [f"{self.root}/v1/{self.device_id}/#", f"camfleet/jpeg/{self.device_id}"]
        client.subscribe([(t, 1) for t in topics])
        if self.controller_birth:
            # Like the controller: a birth after every connect (not retained here, so tests
            # sharing a broker do not see each other's).
            birth = state_pb2.ControllerState(
                presence=state_pb2.PRESENCE_ONLINE,
                instance_id=self.client_id,
                timestamp_ms=int(time.time() * 1000),
            )
            client.publish(controller_state_topic(self.root), codec.encode(birth), qos=1)
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic.startswith("camfleet/jpeg/"):
            with self.cond:
                self.got.latest_jpeg.append(msg.payload)
                self.cond.notify_all()
            return
        try:
            kind = parse(msg.topic, self.root).kind
        except Exception as exc:
            self._error(f"{msg.topic}: {exc}")
            return
        if kind in (Kind.CMD, Kind.RECEIPT, Kind.DESIRED) or not msg.payload:
            return  # our own messages to the device, or a cleared retained topic
        try:
            message = codec.decode(kind, msg.payload).message
        except Exception as exc:
            self._error(f"{msg.topic}: {exc}")
            return
        with self.cond:
            if kind == Kind.CHUNK:
                assert isinstance(message, frame_pb2.FrameChunk)
                frame = self.reassembler.add(self.device_id, message)
                if frame is not None:
                    self._store(frame)
            elif kind == Kind.FRAME:
                assert isinstance(message, frame_pb2.Frame)
                self._store(message)
            elif kind == Kind.STATE:
                self.got.states.append(message)  # type: ignore[arg-type]
            elif kind == Kind.ACK:
                self.got.acks.append(message)  # type: ignore[arg-type]
            elif kind == Kind.REPORTED:
                self.got.reported.append(message)  # type: ignore[arg-type]
            elif kind == Kind.EVENT:
                self.got.events.append(message)
            elif kind == Kind.TELEMETRY:
                self.got.telemetry.append(message)
            self.cond.notify_all()

    def _store(self, frame: frame_pb2.Frame) -> None:
        key = (frame.session, frame.seq)
        header = frame_pb2.Frame()
        header.CopyFrom(frame)
        header.ClearField("data")  # keep memory small: the data is in got.frames
        self.got.arrivals.append(header)
        if key in self.got.frames:
            self.got.duplicates += 1
        else:
            self.got.frames[key] = frame
            self.got.order.append(key)
        if self.receipts and key not in self.withhold:
            receipt = make_receipt([key], int(time.time() * 1000))
            self.client.publish(
                device_topic(self.device_id, Kind.RECEIPT, self.root), codec.encode(receipt), qos=1
            )

    def _error(self, text: str) -> None:
        with self.cond:
            self.got.errors.append(text)
            self.cond.notify_all()

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

    def send(self, kind: Kind, message: Any, retain: bool = False) -> None:
        payload = message if isinstance(message, bytes) else codec.encode(message)
        info = self.client.publish(
            device_topic(self.device_id, kind, self.root), payload, qos=1, retain=retain
        )
        info.wait_for_publish(5)

    def command(self, command_id: str, **action: Any) -> command_pb2.Command:
        cmd = command_pb2.Command(id=command_id, issued_at_ms=int(time.time() * 1000), **action)
        self.send(Kind.CMD, cmd)
        return cmd

    def wait_ack(
        self, command_id: str, final: bool = True, timeout: float = 15.0
    ) -> command_pb2.Ack:
        accepted = command_pb2.ACK_STATUS_ACCEPTED

        def found(g: Received) -> bool:
            return any(
                a.command_id == command_id and (not final or a.status != accepted) for a in g.acks
            )

        self.wait_for(found, timeout, f"ack of {command_id}")
        with self.cond:
            return [
                a
                for a in self.got.acks
                if a.command_id == command_id and (not final or a.status != accepted)
            ][-1]
