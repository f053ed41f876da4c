"""The node tests' controller stand-in: the shared DeviceReceiver (decodes, stores frames,
sends receipts) plus an OTA block server: with an image attached it answers
``OtaBlockRequest``s with ``OtaBlock``s (optionally corrupting some)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from camfleet.proto import codec, topics
from camfleet.proto.v1 import command_pb2, ota_pb2
from camfleet.testing.device_receiver import DeviceReceiver


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


class Receiver(DeviceReceiver):
    def __init__(
        self,
        host: str,
        port: int,
        device_id: str,
        root: str = "camfleet",
        device_key: bytes = b"",
        **kwargs: Any,
    ) -> None:
        super().__init__(host, port, device_id, root=root, device_key=device_key, **kwargs)
        self.ota: OtaImage | None = None
        self.on_block_served: Callable[[int], None] | None = None

    def handle(self, kind: topics.Kind, message: Any) -> None:
        if kind is topics.Kind.OTA_REQUEST:
            self._serve(message)

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
