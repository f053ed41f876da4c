"""Units of work handed from the MQTT thread to the writer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import Message

from camfleet.controller.storage.database import Tx
from camfleet.proto.topics import Kind

#: Something to run once the job's transaction has committed (publish, notify, ...).
AfterCommit = Callable[[], None]


@dataclass(slots=True)
class Delivery:
    """One broker delivery to acknowledge (paho manual ack) once its effect is durable."""

    ack: Callable[[int, int], object]
    mid: int
    qos: int

    def done(self) -> None:
        if self.qos > 0:
            self.ack(self.mid, self.qos)


@dataclass(slots=True)
class Job:
    """A decoded device message (or an internal call) for the writer to apply."""

    kind: Kind | None
    device_id: str
    message: Message | None
    deliveries: list[Delivery] = field(default_factory=list)
    received_ms: int = 0
    received_at: float = field(default_factory=time.monotonic)
    #: For internal jobs (kind None): a function applied in the batch transaction.
    call: Callable[[Tx], AfterCommit | None] | None = None
