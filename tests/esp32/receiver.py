"""A small controller stand-in for the node tests: stores frames, sends receipts, serves OTA.

Every message the node publishes is decoded with ``camfleet.proto.codec.decode`` (a message that
does not decode fails the test through ``errors``); frames are stored by (session, seq), chunked
ones reassembled with ``camfleet.proto.chunking.Reassembler``, and each stored frame is
acknowledged with a ``Receipt`` from ``camfleet.proto.receipts.make_receipt``. With an image
attached it answers ``OtaBlockRequest``s with ``OtaBlock``s (optionally corrupting some).
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from camfleet.proto import codec, topics
from camfleet.proto.chunking import Reassembler
from camfleet.proto.errors import ContractError
from camfleet.proto.receipts import make_receipt
from camfleet.proto.v1 import command_pb2, config_pb2, frame_pb2, ota_pb2


@dataclass
class OtaImage:
    artifact_id: str
    data: bytes
    block_size: int = 4096
    corrupt_once: set[int] = field(default_factory=set)  # block indexes sent corrupted once
    served: int = 0
    requests: int = 0

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.data).digest()

    @property
    def total_blocks(self) -> int:
        return (len(self.data) + self.block_size - 1) // self.block_size

    def offer(
        self, key: bytes, version: str, signature: bytes | None = None
    ) -> command_pb2.OtaOffer:
        sig = signature if signature is not None else hmac.new(key, self.sha256, "sha256").digest()
        return command_pb2.OtaOffer(
            artifact_id=self.artifact_id,
            version=version,
            size=len(self.data),
            sha256=self.sha256,
            block_size=self.block_size,
            scheme=command_pb2.SIGNATURE_SCHEME_HMAC_SHA256,
            signature=sig,
            platform="esp32",
        )


class Receiver:
    def __init__(self, host: str, port: int, device_id: str, root: str = "camfleet") -> None:
        self.host, self.port, self.device_id, self.root = host, port, device_id, root
        self.cond = threading.Condition()
        self.messages: dict[str, list[Any]] = {k.value: [] for k in topics.Kind}
        self.frames: dict[tuple[int, int], frame_pb2.Frame] = {}
        self.duplicates = 0
        self.errors: list[str] = []
        self.noncanonical: list[str] = []
        self.send_receipts = True
        self.ota: OtaImage | None = None
        self.on_block_served: Callable[[int], None] | None = None
        self.reassembler = Reassembler(timeout_s=600)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-controller-{device_id}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._connected = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Receiver:
        self._connected.clear()
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("receiver could not connect")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        sock = client.socket()
        if isinstance(sock, socket.socket):
            # a receipt right after a PUBACK would otherwise wait for mosquitto's delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for kind in topics.DEVICE_TO_CONTROLLER:
            client.subscribe(topics.device_topic(self.device_id, kind, self.root), qos=1)
        # a sync point: the SUBACKs come before this message is delivered back
        client.subscribe(f"{self.root}/v1/_test/{self.device_id}/sync", qos=1)
        client.publish(f"{self.root}/v1/_test/{self.device_id}/sync", b"", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if "/_test/" in msg.topic:
            self._connected.set()
            return
        try:
            t = topics.parse(msg.topic, self.root)
            decoded = codec.decode(t.kind, msg.payload).message
        except ContractError as e:
            with self.cond:
                self.errors.append(f"{msg.topic}: {e}")
                self.cond.notify_all()
            return
        if codec.encode(decoded) != msg.payload:
            # every node message is byte-identical to what the generated classes would write
            with self.cond:
                self.noncanonical.append(f"{msg.topic}: {msg.payload.hex()}")
        frame = None
        if t.kind == topics.Kind.FRAME:
            frame = decoded
        elif t.kind == topics.Kind.CHUNK:
            frame = self.reassembler.add(self.device_id, decoded)
        if t.kind == topics.Kind.OTA_REQUEST:
            self._serve(decoded)
        with self.cond:
            self.messages[t.kind.value].append(decoded)
            if frame is not None:
                key = (frame.session, frame.seq)
                if key in self.frames:
                    self.duplicates += 1
                else:
                    self.frames[key] = frame
            self.cond.notify_all()
        if frame is not None and self.send_receipts:
            receipt = make_receipt([(frame.session, frame.seq)])
            client.publish(self.topic(topics.Kind.RECEIPT), codec.encode(receipt), qos=1)

    def _serve(self, req: ota_pb2.OtaBlockRequest) -> None:
        img = self.ota
        if img is None or req.artifact_id != img.artifact_id:
            return
        img.requests += 1
        for j in range(req.count):
            if req.wanted and not req.wanted[j // 8] & (1 << (j % 8)):
                continue
            i = req.first_block + j
            if i >= img.total_blocks:
                break
            data = img.data[i * img.block_size : (i + 1) * img.block_size]
            block = ota_pb2.OtaBlock(
                artifact_id=img.artifact_id,
                index=i,
                total_blocks=img.total_blocks,
                sha256=hashlib.sha256(data).digest(),
                data=data,
            )
            if i in img.corrupt_once:
                img.corrupt_once.discard(i)
                block.data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.client.publish(self.topic(topics.Kind.OTA_BLOCK), codec.encode(block), qos=1)
            img.served += 1
            if self.on_block_served is not None:
                self.on_block_served(img.served)

    # --- controller -> device -----------------------------------------------------------

    def topic(self, kind: topics.Kind) -> str:
        return topics.device_topic(self.device_id, kind, self.root)

    def send_command(self, cmd: command_pb2.Command) -> None:
        self.client.publish(self.topic(topics.Kind.CMD), codec.encode(cmd), qos=1).wait_for_publish(
            10
        )

    def send_raw_command(self, payload: bytes) -> None:
        self.client.publish(self.topic(topics.Kind.CMD), payload, qos=1).wait_for_publish(10)

    def set_desired(self, desired: config_pb2.Desired) -> None:
        info = self.client.publish(
            self.topic(topics.Kind.DESIRED), codec.encode(desired), qos=1, retain=True
        )
        info.wait_for_publish(10)

    # --- waiting ------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def of(self, kind: str) -> list[Any]:
        with self.cond:
            return list(self.messages[kind])
