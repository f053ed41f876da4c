"""Home Assistant integration: latest raw JPEG retained per device + MQTT discovery.

HA's ``camera.mqtt`` reads the retained JPEG topic as it is; discovery makes the camera entity
appear without YAML. Published after a frame is durably stored, for live (non-historical)
frames only, so a spool replay never shows an old picture as the latest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from camfleet.controller.ingest.writer import BatchResult
from camfleet.proto import topics


class HomeAssistant:
    def __init__(
        self,
        publish: Callable[..., None],
        jpeg_prefix: str = "camfleet/jpeg",
        ha_prefix: str = "homeassistant",
        min_interval_s: float = 1.0,
    ) -> None:
        self.publish = publish
        self.jpeg_prefix = jpeg_prefix
        self.ha_prefix = ha_prefix
        self._announced: set[str] = set()
        self._latest: dict[str, tuple[int, int, int]] = {}
        self._published_at: dict[str, float] = {}
        self.min_interval_s = min_interval_s

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
            if device_id not in self._announced:
                self._announce(device_id)
            self.publish(
                topics.latest_jpeg_topic(device_id, self.jpeg_prefix), data, qos=0, retain=True
            )

    def _announce(self, device_id: str) -> None:
        config = {
            "name": None,
            "unique_id": f"camfleet_{device_id}_camera",
            "object_id": f"camfleet_{device_id}",
            "topic": topics.latest_jpeg_topic(device_id, self.jpeg_prefix),
            "device": {
                "identifiers": [f"camfleet_{device_id}"],
                "name": device_id,
                "manufacturer": "camfleet",
            },
        }
        self.publish(
            topics.ha_discovery_topic(device_id, prefix=self.ha_prefix),
            json.dumps(config).encode(),
            qos=1,
            retain=True,
        )
        self._announced.add(device_id)
