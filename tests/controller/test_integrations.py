"""Home Assistant topics: the latest live JPEG retained per device, and MQTT discovery."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.proto import topics


def test_latest_jpeg_and_discovery_after_store(controllers, devices, mosquitto) -> None:  # type: ignore[no-untyped-def]
    controllers()
    dev = devices("ha")
    frame = dev.send_frames(1, size=3000)[0]
    assert dev.wait_receipted(timeout=20)

    got: dict[str, bytes] = {}
    both = threading.Event()

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        got[msg.topic] = msg.payload
        if len(got) == 2:
            both.set()

    # Subscribing afterwards proves both are retained.
    reader = mqtt.Client(CallbackAPIVersion.VERSION2)
    reader.on_message = on_message
    reader.connect(mosquitto.host, mosquitto.port)
    reader.subscribe(
        [
            (topics.latest_jpeg_topic(dev.device_id), 1),
            (topics.ha_discovery_topic(dev.device_id), 1),
        ]
    )
    reader.loop_start()
    try:
        assert both.wait(60)
    finally:
        reader.loop_stop()
        reader.disconnect()
    assert got[topics.latest_jpeg_topic(dev.device_id)] == frame.data
    discovery = json.loads(got[topics.ha_discovery_topic(dev.device_id)])
    assert discovery["topic"] == topics.latest_jpeg_topic(dev.device_id)
    assert discovery["unique_id"] == f"camfleet_{dev.device_id}_camera"
