"""Small real-broker clients for the contract tests: a paho subscriber that hands messages to a
queue (awaited with timeouts, never slept on) and one-shot publishers."""

from __future__ import annotations

import queue
import threading
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int


class Subscriber:
    """A connected paho client collecting messages of ``filters`` into a queue."""

    def __init__(self, host: str, port: int, filters: list[str], qos: int = 1) -> None:
        self.messages: queue.Queue[Received] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self.client.on_message = lambda c, u, m: self.messages.put(
            Received(m.topic, bytes(m.payload), bool(m.retain), m.qos)
        )
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe([(f, qos) for f in filters])
        self.client.loop_start()
        assert self._subscribed.wait(60), "SUBACK not received"

    def get(self, timeout: float = 10.0) -> Received:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(
    host: str,
    port: int,
    items: list[tuple[str, bytes, bool]],
    qos: int = 1,
    protocol: int = mqtt.MQTTv311,
) -> None:
    """Publish (topic, payload, retain) items at ``qos`` and wait until each is acknowledged."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
        protocol=protocol,
    )
    client.connect(host, port)
    client.loop_start()
    try:
        for topic, payload, retain in items:
            client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
