"""Send dynamic-security commands to a running mosquitto as the ``_admin`` identity.

The plugin answers every batch of commands on ``$CONTROL/dynamic-security/v1/response`` with one
result per command (``error`` set when it failed); ``run`` waits for that answer and raises
UserError naming the first failure, so a CLI caller prints one line.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.broker_config import dynsec
from camfleet.errors import UserError
from camfleet.mqtt_url import BrokerUrl


class DynsecAdmin:
    def __init__(self, url: BrokerUrl, ca_file: str | None = None, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._answer: dict[str, Any] | None = None
        self._answered = threading.Event()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._refused: str | None = None
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"camfleet-admin-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        if url.username:
            c.username_pw_set(url.username, url.password)
        if url.tls:
            c.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        self.client = c

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._refused = str(rc)
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._answer = json.loads(msg.payload)
        except ValueError:
            self._answer = {"responses": [{"error": "unreadable answer from the plugin"}]}
        self._answered.set()

    def __enter__(self) -> DynsecAdmin:
        try:
            self.client.connect(self.url.host, self.url.port)
        except OSError as exc:
            raise UserError(f"cannot reach the broker at {self.url}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(self.timeout):
            self.close()
            raise UserError(f"the broker at {self.url} did not answer the connection")
        if self._refused is not None:
            self.close()
            raise UserError(f"the broker refused the admin identity: {self._refused}")
        self.client.subscribe(dynsec.RESPONSE_TOPIC, qos=1)
        if not self._subscribed.wait(self.timeout):
            self.close()
            raise UserError("the broker did not confirm the admin subscription")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def run(
        self, commands: list[dict[str, Any]], ignore: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """Apply ``commands`` in order; errors whose text contains one of ``ignore`` are fine
        (e.g. "not found" when deleting what is already gone). Returns the plugin's answers
        (one per command, with its ``data``)."""
        self._answered.clear()
        self.client.publish(dynsec.CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        if not self._answered.wait(self.timeout):
            raise UserError("the broker's dynamic security plugin did not answer")
        assert self._answer is not None
        responses: list[dict[str, Any]] = self._answer.get("responses", [])
        for cmd, res in zip(commands, responses, strict=False):
            error = res.get("error")
            if error and not any(text in error for text in ignore):
                raise UserError(f"broker refused {cmd['command']}: {error}")
        return responses

    def usernames(self) -> list[str]:
        """Every identity the plugin knows."""
        answer = self.run([{"command": "listClients", "verbose": False}])
        clients = answer[0].get("data", {}).get("clients", []) if answer else []
        return [c if isinstance(c, str) else c["username"] for c in clients]
