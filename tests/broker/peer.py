"""A paho client for the security tests: connects with an identity (or none), says whether the
broker accepted it, collects what it receives, and reports each SUBACK's grant or refusal."""

from __future__ import annotations

import queue
import ssl
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt


class Peer:
    def __init__(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        ca_file: str | None = None,
        tls: bool = False,
        cert: tuple[str, str] | None = None,  # (certificate, key) files: TLS with that identity
    ) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connected = threading.Event()
        self.refused: str | None = None
        self._suback: queue.Queue[list[Any]] = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        self.disconnected = threading.Event()
        self._settled = threading.Event()  # connected or disconnected, whichever came first
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls or cert:
            certfile, keyfile = cert or (None, None)
            self.client.tls_set(
                ca_certs=ca_file, certfile=certfile, keyfile=keyfile, cert_reqs=ssl.CERT_REQUIRED
            )
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._suback.put(codes)
        self.client.on_disconnect = lambda *a: (self.disconnected.set(), self._settled.set())
        self.port = port

    def _on_connect(self, client: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        if rc.is_failure:
            self.refused = str(rc)
            client.disconnect()
        self.connected.set()
        self._settled.set()

    def connect(self) -> bool:
        """True if the broker accepted the connection (False also when the TLS handshake
        failed: the broker refused the client's certificate, or it had none)."""
        try:
            self.client.connect("127.0.0.1", self.port)
        except ssl.SSLCertVerificationError:
            raise  # this client refused the broker's certificate: not the broker's answer
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
            self.refused = f"TLS handshake: {exc}"
            return False
        self.client.loop_start()
        # A TLS listener that refuses the certificate closes the connection without a CONNACK.
        assert self._settled.wait(60), "no CONNACK"
        if not self.connected.is_set():
            self.refused = "closed before CONNACK"
        return self.refused is None

    def subscribe(self, topic: str) -> bool:
        """True if the broker granted the subscription."""
        self.client.subscribe(topic, qos=1)
        codes = self._suback.get(timeout=10)
        return not codes[0].is_failure

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def forge(self, topic: str, payload: bytes = b"forged") -> bool:
        """Publish what the identity may not; True when the broker drops the connection for it
        (mosquitto 2.0 disconnects an MQTT 3.1.1 client whose publish its ACL denies)."""
        self.client.publish(topic, payload, qos=1)
        return self.disconnected.wait(10)

    def next(self, timeout: float = 10.0) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
