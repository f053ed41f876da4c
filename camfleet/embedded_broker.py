"""An in-process MQTT 3.1.1 broker (amqtt) for the zero-install demo and broker-agnostic tests.

Production and the durability tests use mosquitto (camfleet.mosquitto); this exists so the demo
runs where mosquitto is not installed and so the contract tests prove the protocol does not
depend on one broker's quirks. amqtt is pure Python: expect ~2k msg/s, not mosquitto's speed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from camfleet.mosquitto import free_port


class EmbeddedBroker:
    """amqtt running on its own event loop in a daemon thread, listening on 127.0.0.1."""

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "the embedded broker needs amqtt: pip install 'camfleet[embedded-broker]'"
            ) from exc
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._broker = Broker(config, loop=loop)
                loop.run_until_complete(self._broker.start())
            except BaseException as exc:  # reported to start()
                self._error = exc
                self._started.set()
                return
            self._started.set()
            loop.run_forever()
            loop.run_until_complete(self._broker.shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"amqtt did not start on port {self.port}")
        if self._error is not None:
            raise RuntimeError(f"amqtt failed to start: {self._error}") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
            self._loop = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
