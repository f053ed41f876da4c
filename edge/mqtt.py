"""The agent's MQTT connection: persistent session, birth/will per session, backoff with jitter.

paho-mqtt's own reconnect loop cannot change the will between attempts, and every connect
needs a new session number in its will, so this module runs its own loop around
``client.connect`` + ``client.loop``: before each attempt it asks the agent for the will, after
a loss it waits ``min(max, min * 2**attempt)`` scaled by a random factor in [0.5, 1] (jitter,
so a fleet does not reconnect in lockstep after a broker restart).

Clean session is off and the client id is stable, so commands and receipts sent while the
agent is away wait in the broker.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from camfleet.edge.config import EdgeConfig
from camfleet.proto.topics import Kind, controller_state_topic, device_filters, device_topic

log = logging.getLogger(__name__)

#: CONNACK refusals that mean "not these credentials" (MQTT 3.1.1 codes 4 and 5, as paho words
#: them)
AUTH_REFUSALS = ("Not authorized", "Bad user name or password")

#: messages paho may hold while offline (acks, events); frames are bounded by the spool sender
MAX_QUEUED = 1000


class Connection:
    """One paho client driven by a network thread. Callbacks run on that thread: keep them short.

    ``will`` is called before each connect attempt and returns (session, will payload);
    ``on_connected(session)`` after CONNACK; ``on_message(topic, payload, retained)`` for each
    message (``retained``: delivered from the broker's store, not live);
    ``changed`` is notified on connect, disconnect and every PUBACK.
    """

    def __init__(
        self,
        config: EdgeConfig,
        *,
        will: Callable[[], tuple[int, bytes]],
        on_connected: Callable[[int], None],
        on_disconnected: Callable[[], None],
        on_message: Callable[[str, bytes, bool], None],
        rng: Callable[[], float] = random.random,
        credentials: list[tuple[str, str]] | None = None,
    ) -> None:
        self.config = config
        self._will = will
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_message_cb = on_message
        self._rng = rng
        self.changed = threading.Condition()
        self.connected = threading.Event()
        self.epoch = 0  # increments on every successful connect
        self.session = 0
        self.connects = 0
        #: the current connection's broker no longer had the persistent session an earlier
        #: connection of this process left there (a crash before its autosave, a wipe): it has
        #: most likely lost the controller's subscription with it (see SpoolSender)
        self.session_lost = False
        #: topics whose publisher sends its unacknowledged messages again itself after a
        #: reconnect (the spool sender: frames, chunks), see _drop_owned
        self.owned_topics: set[str] = set()
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        b = config.broker
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
        )
        #: (username, password) pairs to connect with, the one in use first: delivered ones
        #: (``camfleet device rotate``) before the config file's. A pair the broker refuses
        #: yields to the next (a rotation that was undone falls back to the old identity).
        self.identities = list(credentials or [])
        if b.url.username and (b.url.username, b.url.password or "") not in self.identities:
            self.identities.append((b.url.username, b.url.password or ""))
        if self.identities:
            self.client.username_pw_set(*self.identities[0])
        if b.url.tls:
            self.client.tls_set(
                ca_certs=str(b.ca_file) if b.ca_file else None,
                certfile=str(b.cert_file) if b.cert_file else None,
                keyfile=str(b.key_file) if b.key_file else None,
            )
        self.client.max_inflight_messages_set(max(20, b.inflight + 4))
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.state_topic = device_topic(config.device.id, Kind.STATE, b.root)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edge-mqtt", daemon=True)
        self._thread.start()

    def close(self, final: tuple[str, bytes] | None = None, timeout: float = 3.0) -> None:
        """Publish ``final`` (topic, payload: the OFFLINE state) if connected, then disconnect
        cleanly (no will) and stop the network thread."""
        if final is not None and self.connected.is_set():
            info = self.client.publish(final[0], final[1], qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self._stop.set()
        self.client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout + 5)

    def _run(self) -> None:
        b = self.config.broker
        attempt = 0
        while not self._stop.is_set():
            try:
                if self._connect_and_serve():
                    attempt = 0  # a connection that worked resets the backoff
            except Exception:  # a bug in a callback must not end reconnecting for good
                log.exception("MQTT session failed; reconnecting")
                self.client.disconnect()
                self._set_disconnected()
            if self._stop.is_set():
                break
            delay = min(b.reconnect_max_s, b.reconnect_min_s * 2**attempt)
            attempt = min(attempt + 1, 30)
            self._stop.wait(delay * (0.5 + 0.5 * self._rng()))

    def _connect_and_serve(self) -> bool:
        """One connection: will, CONNECT, then the paho loop until it ends. True if it got
        as far as CONNACK."""
        b = self.config.broker
        session, will_payload = self._will()
        self.session = session
        self.client.will_set(self.state_topic, will_payload, qos=1, retain=True)
        self._drop_owned()
        try:
            self.client.connect(b.url.host, b.url.port, keepalive=b.keepalive_s)
        except (OSError, ValueError) as exc:
            self._note_error(f"cannot connect to {b.url}: {exc}")
            return False
        while not self._stop.is_set():
            if self.client.loop(timeout=0.5) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        worked = self.connected.is_set()
        self._set_disconnected()
        return worked

    def _drop_owned(self) -> None:
        """Forget the messages on ``owned_topics`` that paho still holds from the last
        connection. paho would send its unacknowledged QoS 1 messages again right after the
        next CONNACK, while the spool sender replays from the oldest unreceipted frame: a frame
        paho held could then overtake an older one the broker had acknowledged and lost (a
        crash), and first arrivals would leave capture order. The sender owns every replay.
        Uses paho 2.2 internals (the version is pinned in pyproject.toml)."""
        with self.client._out_message_mutex:
            for mid, message in list(self.client._out_messages.items()):
                if message.topic in self.owned_topics:
                    del self.client._out_messages[mid]

    def _note_error(self, message: str) -> None:
        if message != self.last_error:  # log each distinct problem once, not every retry
            log.warning("%s", message)
        self.last_error = message

    def _set_disconnected(self) -> None:
        if self.connected.is_set():
            self.connected.clear()
            self._on_disconnected()
        with self.changed:
            self.changed.notify_all()

    # --- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        rc: object,
        properties: object = None,
    ) -> None:
        if getattr(rc, "is_failure", False):
            self._note_error(f"broker {self.config.broker.url} refused the connection: {rc}")
            if len(self.identities) > 1 and str(rc) in AUTH_REFUSALS:
                self.identities.append(self.identities.pop(0))  # next attempt: the next one
                client.username_pw_set(*self.identities[0])
            return
        self.last_error = ""
        topics = device_filters(
            self.config.device.id, self.config.device.groups, self.config.broker.root
        )
        # The controller's presence: its birth means "(re)subscribed, send what I lack".
        topics.append(controller_state_topic(self.config.broker.root))
        client.subscribe([(t, 1) for t in topics])
        self.session_lost = self.connects > 0 and not flags.session_present
        self.connects += 1
        self._on_connected(self.session)  # birth first: it must precede any frame
        with self.changed:
            self.epoch += 1
            self.connected.set()
            self.changed.notify_all()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        rc: object,
        properties: object = None,
    ) -> None:
        self._set_disconnected()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self._on_message_cb(msg.topic, bytes(msg.payload), bool(msg.retain))

    def _on_publish(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        rc: object = None,
        properties: object = None,
    ) -> None:
        with self.changed:
            self.changed.notify_all()

    @property
    def username(self) -> str:
        """The broker identity this connection uses ("" for none)."""
        return self.identities[0][0] if self.identities else ""

    def switch_identity(self, username: str, password: str) -> None:
        """Use these credentials from now on (the old ones stay as the fallback): disconnect
        cleanly and let the loop reconnect with them. Spooled frames and queued messages wait."""
        self.identities = [(username, password), *(i for i in self.identities if i[0] != username)]
        self.client.username_pw_set(username, password)
        self.client.disconnect()

    # --- publishing --------------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> paho.MQTTMessageInfo:
        """Queue a message (thread-safe). QoS 1 messages published offline wait in paho."""
        return self.client.publish(topic, payload, qos=qos, retain=retain)
