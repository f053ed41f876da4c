"""The MQTT channel: one paho client with a persistent session and manual acknowledgements.

- a persistent session (MQTT 5: clean_start=False + session expiry; 3.1.1: clean_session=False)
  and a stable client id: a controller killed with -9 finds its session
  (subscriptions and the un-acknowledged frames) again at reconnect, and the broker redelivers.
- ``manual_ack=True``: a QoS 1 delivery is acknowledged only when the dispatcher/writer says its
  effect is durable.
- MQTT 5 by default, for one reason: Receive Maximum. With manual acks, the broker's in-flight
  window bounds throughput (window / commit latency); mosquitto's global max_inflight_messages
  applies to 3.1.1 clients, while a 5 client announces its own window (``receive_maximum``), so
  the next batch arrives while the previous one is being committed. ``protocol=3.1.1`` works too.
- The controller's presence is retained on ``{root}/v1/_controller/state`` with a will.
"""

from __future__ import annotations

import copy
import functools
import logging
import ssl
import struct
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from camfleet.mqtt_url import BrokerUrl
from camfleet.proto import codec, topics
from camfleet.proto.v1 import state_pb2

log = logging.getLogger("camfleet.controller.mqtt")

OnMessage = Callable[[str, bytes, int, int, bool, Callable[[int, int], object]], None]


# paho doubles its wait between connection attempts from the first to the second.
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 5


class MqttChannel:
    def __init__(
        self,
        url: BrokerUrl,
        client_id: str,
        on_message: OnMessage,
        root: str = topics.DEFAULT_ROOT,
        share_group: str | None = None,
        instance_id: str = "",
        version: str = "",
        keepalive: int = 30,
        protocol: str = "5",
        receive_maximum: int = 1000,
        session_expiry_s: int = 7 * 86400,
    ) -> None:
        self.url = url
        self.root = root
        self.share_group = share_group
        self.instance_id = instance_id
        self.version = version
        self.started_ms = int(time.time() * 1000)
        self._on_message = on_message
        self.on_connected: list[Callable[[], None]] = []
        #: Filters outside ``{root}/v1/`` (integrations: Home Assistant's button) -> handler
        #: (topic, payload), called in the network thread; set before ``start``. Subscribed as
        #: shared subscriptions when ``share_group`` is set.
        self.extra_subscriptions: dict[str, Callable[[str, bytes], None]] = {}
        self._device_prefix = f"{root}/v1/"
        self.connected = threading.Event()
        # (MessageInfo, callback) pairs waiting for the broker's PUBACK. Polled by a small
        # thread rather than paho's on_publish: paho calls on_publish holding its own locks, and
        # registering a callback there would race or deadlock with publish() in other threads.
        self._pending: list[tuple[mqtt.MQTTMessageInfo, Callable[[], None]]] = []
        self._pending_lock = threading.Lock()
        self._stopping = threading.Event()
        self._confirmer = threading.Thread(
            target=self._confirm, name="camfleet-puback", daemon=True
        )
        install_fast_publish_decode()
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if protocol == "5" else False,
            protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
            manual_ack=True,
        )
        self.keepalive = keepalive
        self.protocol = protocol
        self.connect_properties: Properties | None = None
        if protocol == "5":
            self.connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            self.connect_properties.SessionExpiryInterval = session_expiry_s
            self.connect_properties.ReceiveMaximum = receive_maximum
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        if url.tls:
            self.client.tls_set()
        self.client.max_queued_messages_set(0)
        # Unlimited outgoing window: a receipt must never queue behind it while the PUBACK that
        # follows it goes out first (see Writer._process).
        self.client.max_inflight_messages_set(0)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        #: Failed connection attempts since the last success, and when the last one failed: the
        #: log names each attempt and the wait since the one before (paho's backoff, which it
        #: does not expose).
        self.failed_attempts = 0
        self._last_failure = 0.0
        self.client.will_set(
            topics.controller_state_topic(root),
            self._presence(state_pb2.PRESENCE_OFFLINE),
            qos=1,
            retain=True,
        )
        self._acker = Acker(self.client)
        self._subscribe_mid: int | None = None
        self.client.on_connect = self._connected
        self.client.on_connect_fail = self._connect_failed
        self.client.on_subscribe = self._subscribed
        self.client.on_disconnect = self._disconnected
        self.client.on_message = self._message

    def _presence(self, presence: int) -> bytes:
        return codec.encode(
            state_pb2.ControllerState(
                presence=presence,  # type: ignore[arg-type]
                instance_id=self.instance_id,
                timestamp_ms=int(time.time() * 1000),
                version=self.version,
                started_at_ms=self.started_ms,
            )
        )

    def start(self) -> None:
        if self.protocol == "5":
            self.client.connect_async(
                self.url.host,
                self.url.port,
                keepalive=self.keepalive,
                clean_start=False,
                properties=self.connect_properties,
            )
        else:
            self.client.connect_async(self.url.host, self.url.port, keepalive=self.keepalive)
        self.client.loop_start()
        self._confirmer.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self.connected.is_set():
            info = self.client.publish(
                topics.controller_state_topic(self.root),
                self._presence(state_pb2.PRESENCE_OFFLINE),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self._stopping.set()
        self.client.disconnect()
        self.client.loop_stop()

    def _connect_failed(self, client: mqtt.Client, userdata: object) -> None:
        """paho could not open a connection (refused, no route, DNS): say so on every attempt."""
        now = time.monotonic()
        self.failed_attempts += 1
        since = (
            f", {now - self._last_failure:.0f} s after attempt {self.failed_attempts - 1}"
            if self.failed_attempts > 1
            else ""
        )
        self._last_failure = now
        log.warning(
            "cannot reach the broker at %s (attempt %d failed%s); retrying with a backoff of "
            "%d to %d s",
            self.url,
            self.failed_attempts,
            since,
            RECONNECT_MIN_S,
            RECONNECT_MAX_S,
        )

    def _connected(self, client: mqtt.Client, userdata: object, flags, rc, props=None) -> None:  # type: ignore[no-untyped-def]
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        if self.failed_attempts:
            log.warning(
                "reached the broker at %s after %d failed attempts", self.url, self.failed_attempts
            )
        self.failed_attempts = 0
        log.info("connected to %s (session present: %s)", self.url, flags.session_present)
        filters = topics.controller_filters(self.root, self.share_group)
        # Shared like frames: with several controllers, one of them handles each message (one
        # Home Assistant button press is one capture command, not one per controller).
        share = f"$share/{self.share_group}/" if self.share_group else ""
        filters += [share + f for f in self.extra_subscriptions]
        _, self._subscribe_mid = client.subscribe([(f, 1) for f in filters])

    def _subscribed(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        props: Properties | None = None,
    ) -> None:
        # ONLINE presence only once the broker has the subscriptions: devices re-send what is not
        # receipted when they see ONLINE, so a frame published between an early ONLINE and the
        # SUBACK would reach no subscriber and wait for the device's re-send timeout.
        if mid != self._subscribe_mid:
            return
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("broker refused subscriptions: %s", ", ".join(refused))
        self.publish_presence()
        self.connected.set()
        for hook in self.on_connected:
            threading.Thread(target=_safe(hook), name="camfleet-on-connect", daemon=True).start()

    def publish_presence(self) -> None:
        """Publish (retained) that this controller is ONLINE."""
        self.client.publish(
            topics.controller_state_topic(self.root),
            self._presence(state_pb2.PRESENCE_ONLINE),
            qos=1,
            retain=True,
        )

    def _disconnected(self, client, userdata, flags, rc, props=None) -> None:  # type: ignore[no-untyped-def]
        self.connected.clear()
        if self._stopping.is_set():
            log.info("disconnected from %s", self.url)
        else:
            log.warning("disconnected from %s (%s); reconnecting", self.url, rc)

    def _message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self.extra_subscriptions and not msg.topic.startswith(self._device_prefix):
            for pattern, handler in self.extra_subscriptions.items():
                if mqtt.topic_matches_sub(pattern, msg.topic):
                    _safe(functools.partial(handler, msg.topic, bytes(msg.payload)))()
                    if msg.qos:
                        self._acker(msg.mid, msg.qos)
                    return
        self._on_message(
            msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain), self._acker
        )

    def _confirm(self) -> None:
        while not self._stopping.wait(0.05):
            with self._pending_lock:
                if not self._pending:
                    continue
                done: list[tuple[mqtt.MQTTMessageInfo, Callable[[], None]]] = []
                waiting: list[tuple[mqtt.MQTTMessageInfo, Callable[[], None]]] = []
                for pair in self._pending:
                    (done if pair[0].is_published() else waiting).append(pair)
                self._pending = waiting
            for _, callback in done:
                _safe(callback)()

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_acked: Callable[[], None] | None = None,
    ) -> None:
        """Publish; ``on_acked`` runs (in the network thread) when the broker has the message."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if on_acked is not None:
            with self._pending_lock:
                self._pending.append((info, on_acked))


class BufferedClient(mqtt.Client):
    """A paho client that reads a plain TCP socket in 256 KiB gulps.

    paho reads a packet with one ``recv`` for the type, one per byte of the remaining length
    and one or more for the body, and goes back to ``select`` after each packet when nothing
    of its own is in flight: 5-7 system calls per frame. Here ``_sock_recv`` serves those reads
    from one large ``recv``, and ``loop_read`` keeps handling packets while bytes are buffered
    (``select`` cannot see them). TLS sockets keep paho's own path (the SSL layer buffers).
    """

    _READ_SIZE = 256 * 1024
    _rsock: object = None
    _rbuf: bytes = b""
    _rpos: int = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        sock = self._sock
        if sock is None or isinstance(sock, ssl.SSLSocket):
            return super()._sock_recv(bufsize)
        if sock is not self._rsock:  # a new connection: nothing buffered belongs to it
            self._rsock, self._rbuf, self._rpos = sock, b"", 0
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(max(bufsize, self._READ_SIZE))
            if len(data) <= bufsize:
                return data
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        """Queue an outgoing packet, waking the network thread only when the queue was empty.

        paho writes a byte to its wake-up socket pair for every packet queued from another
        thread: a system call that gives up the GIL, and taking it back waits for the busy
        network thread's switch interval. The writer publishes a batch's receipts in a row, so
        that wait came once per receipt (a quarter of the writer's wall time in a 5,000-device
        group capture). One byte is enough: a packet that finds the queue non-empty is sent by
        the same drain (``_packet_write`` empties the queue, and a queue left non-empty puts
        the socket in ``select``'s write list on the next turn of the loop).
        """
        if self._thread is None or not self._out_packet:
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._sock is not None
            and self._sock is self._rsock
            and self._rpos < len(self._rbuf)
        ):
            rc = super().loop_read(max_packets)
        return rc


def install_fast_publish_decode() -> None:
    """Make paho's decoding of an MQTT 5 PUBLISH (and PUBACK) without properties cheap
    (process-wide).

    paho builds a new ``Properties`` object for every MQTT 5 PUBLISH (~7 us: it fills two lookup
    tables per instance), parses the property block and copies the payload once more: ~15 us a
    message, measured as ~30 us of network-thread CPU per frame against MQTT 3.1.1 in
    bench/ingest. Frames carry no properties, so for a PUBLISH whose property length is 0 this
    returns the same ``PublishPacket`` paho would (an empty ``Properties`` copied from a
    template, the payload as ``bytes``); any other packet goes to paho's own decoder.
    """
    original = _packet.decode_publish
    if getattr(original, "fast_path", False):
        return
    template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]

    def decode_publish(
        header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion
    ) -> _packet.PublishPacket:
        if protocol != MQTTProtocolVersion.MQTTv5 or len(packet) < 3:
            return original(header, packet, protocol)
        qos = (header & 0x06) >> 1
        topic_end = 2 + int.from_bytes(packet[0:2], "big")
        props = topic_end + (2 if qos > 0 else 0)
        if props >= len(packet) or packet[props] != 0:
            return original(header, packet, protocol)
        return _packet.PublishPacket(
            dup=bool(header & 0x08),
            qos=qos,
            retain=bool(header & 0x01),
            topic=bytes(packet[2:topic_end]),
            mid=int.from_bytes(packet[topic_end:props], "big") if qos > 0 else 0,
            properties=copy.copy(template),
            payload=bytes(memoryview(packet)[props + 1 :]),
        )

    decode_publish.fast_path = True  # type: ignore[attr-defined]
    _packet.decode_publish = decode_publish

    # The broker's PUBACK for each command and receipt the controller publishes (two per
    # device in a group capture): paho builds a ReasonCode and a Properties for each (~25 us),
    # also when the packet says plain success (no reason code, or 0 and no properties). Those
    # get one shared pair: paho only hands them to an on_publish callback, to be read.
    original_puback = _packet.decode_puback
    success = ReasonCode(PacketTypes.PUBACK)
    no_properties = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]

    def decode_puback(
        header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion
    ) -> _packet.PubackPacket:
        if protocol != MQTTProtocolVersion.MQTTv5 or len(packet) > 4 or any(packet[2:]):
            return original_puback(header, packet, protocol)
        if len(packet) < 2:
            return original_puback(header, packet, protocol)  # paho's error for it
        return _packet.PubackPacket(
            mid=int.from_bytes(packet[0:2], "big"),
            reason=success,
            properties=no_properties,
        )

    _packet.decode_puback = decode_puback


class Acker:
    """Acknowledges deliveries (paho manual ack): one at a time, or a whole batch at once.

    ``many`` queues the PUBACKs of a batch as ONE buffer: one wake-up of the network thread and
    one ``send`` instead of one of each per frame (paho's ``ack`` costs both). The packets are
    byte for byte what paho's ``ack`` sends (type 0x40, length 2, packet id; MQTT 5 allows the
    reason code to be omitted on success), queued on paho's outgoing packet queue in order with
    everything published before them (the receipts).
    """

    def __init__(self, client: mqtt.Client) -> None:
        self._client = client

    def __call__(self, mid: int, qos: int) -> object:
        return self._client.ack(mid, qos)

    def many(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 deliveries."""
        if not mids:
            return
        blob = b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids])
        self._client._packet_queue(0x40, blob, 0, 1)  # private paho API: see the docstring


_PUBACK = struct.Struct("!BBH")


def speaks_mqtt5(url: BrokerUrl, timeout: float = 5.0) -> bool | None:
    """Probe the broker: True if it accepts an MQTT 5 CONNECT, False if it refuses or drops it
    (an MQTT 3.1.1-only broker such as amqtt), None if it cannot be reached at all."""
    import secrets

    result: dict[str, object] = {}
    answered = threading.Event()

    def on_connect(client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        result.setdefault("rc", rc)
        answered.set()

    def on_disconnect(client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        result.setdefault("rc", "dropped")
        answered.set()

    probe = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"camfleet-probe-{secrets.token_hex(4)}",
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    if url.username:
        probe.username_pw_set(url.username, url.password)
    if url.tls:
        probe.tls_set()
    probe.on_connect = on_connect
    probe.on_disconnect = on_disconnect
    try:
        probe.connect(url.host, url.port, keepalive=10)
    except OSError:
        return None
    probe.loop_start()
    try:
        if not answered.wait(timeout):
            return None
    finally:
        probe.disconnect()
        probe.loop_stop()
    rc = result.get("rc")
    if rc == "dropped":
        return False
    # Any MQTT 5 reason code (even "not authorized") means the broker speaks MQTT 5; a refused
    # protocol version means it does not.
    return getattr(rc, "value", 0) != 132  # 0x84 Unsupported Protocol Version


def _safe(fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:
            log.exception("callback failed")

    return run
