"""Home Assistant integration: latest raw JPEG retained per device, MQTT discovery of a camera,
sensors and a capture button per device, and topics the controller maintains for them.

HA's ``camera.mqtt`` reads the retained JPEG topic as it is; discovery makes the entities appear
without YAML. The JPEG is published after a frame is durably stored, for live (non-historical)
frames only, so a spool replay never shows an old picture as the latest.

Topics under ``ha_state_prefix`` (default ``camfleet/ha``), all retained except the button's:

- ``{device}/availability``: ``online``, ``asleep`` or ``offline``, from the device's births,
  wills and going-to-sleep messages. Entities are available unless it says ``offline`` (a
  sleeping camera still shows its last picture); the "state" sensor shows all three.
- ``{device}/telemetry``: JSON ``{"battery_pct", "rssi_dbm", "spool_depth"}`` (null = not
  measured) from the device's telemetry.
- ``{device}/last_frame``: ISO 8601 UTC capture time of the latest live frame.
- ``{device}/capture`` (HA publishes, the controller subscribes): the button; a press becomes a
  capture command through the controller (registry, expiry, ack), like ``camfleet capture``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from camfleet.controller.ingest.writer import BatchResult
from camfleet.controller.live import Event
from camfleet.proto import topics

log = logging.getLogger("camfleet.controller.integrations")

AVAILABLE, NOT_AVAILABLE = "online", "offline"
#: availability payload by registry presence (anything unknown: not said at all).
_AVAILABILITY = {"online": "online", "asleep": "asleep", "offline": "offline"}
PRESS = "PRESS"


class HomeAssistant:
    def __init__(
        self,
        publish: Callable[..., None],
        jpeg_prefix: str = "camfleet/jpeg",
        ha_prefix: str = "homeassistant",
        min_interval_s: float = 1.0,
        state_prefix: str = "camfleet/ha",
        capture: Callable[[str], object] | None = None,
    ) -> None:
        self.publish = publish
        self.jpeg_prefix = jpeg_prefix
        self.ha_prefix = ha_prefix
        self.state_prefix = state_prefix.rstrip("/")
        self._capture = capture
        self._announced: set[str] = set()
        self._latest: dict[str, tuple[int, int, int]] = {}
        self._published_at: dict[str, float] = {}
        self.min_interval_s = min_interval_s
        # Button presses arrive in the network thread; creating a command writes the registry,
        # so one worker takes them from a bounded queue (a flood of presses is dropped, not
        # queued without end).
        self._presses: queue.Queue[str | None] = queue.Queue(maxsize=256)
        self._worker: threading.Thread | None = None

    # --- topics ----------------------------------------------------------------------------

    def topic(self, device_id: str, leaf: str) -> str:
        return f"{self.state_prefix}/{topics.validate_device_id(device_id)}/{leaf}"

    @property
    def button_filter(self) -> str:
        """The filter the controller subscribes to for button presses."""
        return f"{self.state_prefix}/+/capture"

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._worker = threading.Thread(target=self._run, name="camfleet-ha-button", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            try:
                self._presses.put_nowait(None)
            except queue.Full:
                pass
            self._worker.join(5)

    def on_button(self, topic: str, payload: bytes) -> None:
        """A message on ``{state_prefix}/+/capture`` (network thread)."""
        parts = topic.split("/")
        device_id = parts[-2] if len(parts) >= 2 else ""
        if not topics.is_valid_device_id(device_id) or payload.decode(errors="replace") != PRESS:
            log.warning("ignored Home Assistant button message on %s", topic)
            return
        try:
            self._presses.put_nowait(device_id)
        except queue.Full:
            log.warning("Home Assistant capture presses are arriving faster than handled")

    def _run(self) -> None:
        while (device_id := self._presses.get()) is not None:
            if self._capture is None:
                continue
            try:
                self._capture(device_id)
            except Exception as exc:
                log.warning("Home Assistant capture for %s failed: %s", device_id, exc)

    # --- what the controller committed ---------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """A live event (writer thread): keep availability and telemetry topics current."""
        device_id = event.get("device_id")
        if not isinstance(device_id, str):
            return
        kind = event["type"]
        if kind == "state":
            availability = _AVAILABILITY.get(event["presence"])
            if availability is None:
                return
            self._ensure_announced(device_id)
            self.publish(
                self.topic(device_id, "availability"), availability.encode(), qos=1, retain=True
            )
        elif kind == "telemetry":
            self._ensure_announced(device_id)
            body = {k: event.get(k) for k in ("battery_pct", "rssi_dbm", "spool_depth")}
            self.publish(
                self.topic(device_id, "telemetry"), json.dumps(body).encode(), qos=0, retain=True
            )

    def on_batch(self, result: BatchResult) -> None:
        newest: dict[str, tuple[tuple[int, int, int], bytes]] = {}
        for stored in result.frames:
            f = stored.frame
            if not stored.new or f.historical or (f.content_type or "image/jpeg") != "image/jpeg":
                continue
            order = (f.captured_at_ms, f.session, f.seq)
            if stored.device_id not in newest or order > newest[stored.device_id][0]:
                newest[stored.device_id] = (order, f.data)
        for device_id, (order, data) in newest.items():
            if order <= self._latest.get(device_id, (-1, -1, -1)):
                continue
            # A dashboard picture needs no more than one update a second; republishing every
            # frame would double the broker's traffic.
            now = time.monotonic()
            if now - self._published_at.get(device_id, -1e9) < self.min_interval_s:
                continue
            self._published_at[device_id] = now
            self._latest[device_id] = order
            self._ensure_announced(device_id)
            self.publish(
                topics.latest_jpeg_topic(device_id, self.jpeg_prefix), data, qos=0, retain=True
            )
            when = dt.datetime.fromtimestamp(order[0] / 1000, tz=dt.UTC)
            self.publish(
                self.topic(device_id, "last_frame"),
                when.isoformat(timespec="seconds").encode(),
                qos=0,
                retain=True,
            )

    # --- discovery ---------------------------------------------------------------------------

    def _ensure_announced(self, device_id: str) -> None:
        if device_id not in self._announced:
            self._announced.add(device_id)
            for component, key, config in self.discovery(device_id):
                self.publish(
                    discovery_topic(device_id, component, key, self.ha_prefix),
                    json.dumps(config).encode(),
                    qos=1,
                    retain=True,
                )

    def discovery(self, device_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(component, key, config) of every entity of a device."""
        base = f"camfleet_{device_id}"
        device = {
            "identifiers": [base],
            "name": device_id,
            "manufacturer": "camfleet",
        }
        availability = {
            "availability_topic": self.topic(device_id, "availability"),
            # asleep counts as available: a sleeping camera's last picture is still right.
            "availability_template": "{{ 'offline' if value == 'offline' else 'online' }}",
            "payload_available": AVAILABLE,
            "payload_not_available": NOT_AVAILABLE,
        }

        def entity(kind: str, key: str, **config: Any) -> dict[str, Any]:
            return {
                "unique_id": f"{base}_{key}",
                # entity ids like camera.camfleet_cam1; replaces object_id (removed in HA 2026.4)
                "default_entity_id": f"{kind}.{base}" + ("" if key == "camera" else f"_{key}"),
                "device": device,
                **config,
            }

        telemetry = self.topic(device_id, "telemetry")
        return [
            (
                "camera",
                "camera",
                entity(
                    "camera",
                    "camera",
                    name=None,
                    topic=topics.latest_jpeg_topic(device_id, self.jpeg_prefix),
                    **availability,
                ),
            ),
            (
                "sensor",
                "state",
                entity(
                    "sensor",
                    "state",
                    name="State",
                    state_topic=self.topic(device_id, "availability"),
                    device_class="enum",
                    options=["online", "asleep", "offline"],
                ),
            ),
            (
                "sensor",
                "battery",
                entity(
                    "sensor",
                    "battery",
                    name="Battery",
                    state_topic=telemetry,
                    value_template="{{ value_json.battery_pct }}",
                    device_class="battery",
                    state_class="measurement",
                    unit_of_measurement="%",
                    entity_category="diagnostic",
                    **availability,
                ),
            ),
            (
                "sensor",
                "rssi",
                entity(
                    "sensor",
                    "rssi",
                    name="Signal strength",
                    state_topic=telemetry,
                    value_template="{{ value_json.rssi_dbm }}",
                    device_class="signal_strength",
                    state_class="measurement",
                    unit_of_measurement="dBm",
                    entity_category="diagnostic",
                    **availability,
                ),
            ),
            (
                "sensor",
                "last_frame",
                entity(
                    "sensor",
                    "last_frame",
                    name="Last frame",
                    state_topic=self.topic(device_id, "last_frame"),
                    device_class="timestamp",
                    **availability,
                ),
            ),
            (
                "button",
                "capture",
                entity(
                    "button",
                    "capture",
                    name="Capture",
                    command_topic=self.topic(device_id, "capture"),
                    payload_press=PRESS,
                    **availability,
                ),
            ),
        ]


def discovery_topic(device_id: str, component: str, key: str, prefix: str = "homeassistant") -> str:
    """``{prefix}/{component}/camfleet_{device}[/{key}]/config``: HA's
    ``<prefix>/<component>/[<node_id>/]<object_id>/config``. The camera keeps the topic it had
    before sensors and the button existed, so an installed HA sees the same entity."""
    if key == "camera":
        return topics.ha_discovery_topic(device_id, component, prefix)
    return f"{prefix}/{component}/camfleet_{topics.validate_device_id(device_id)}/{key}/config"
