"""Home Assistant, as HA sees it: discovery payloads valid under HA's schema rules, the retained
JPEG a real picture, availability following births, sleep and wills, the button a capture."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
import voluptuous as vol
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from camfleet.mosquitto import Mosquitto
from camfleet.proto import codec, topics
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import telemetry_pb2
from camfleet.testing.pictures import picture_jpeg

from . import ha_schema


class HaListener:
    """Subscribes like Home Assistant's MQTT integration: discovery plus the entities' topics."""

    def __init__(self, broker: Mosquitto) -> None:
        self.messages: dict[str, bytes] = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(
            [("homeassistant/#", 1), ("camfleet/ha/#", 1), ("camfleet/jpeg/#", 1)]
        )
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        with self._cond:
            self.messages[msg.topic] = bytes(msg.payload)
            self._cond.notify_all()

    def wait(self, predicate: Callable[[dict[str, bytes]], bool], timeout: float = 20) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.messages), timeout), sorted(
                self.messages
            )

    def wait_value(self, topic: str, value: bytes) -> None:
        self.wait(lambda m: m.get(topic) == value)

    def press(self, topic: str) -> None:
        self.client.publish(topic, b"PRESS", qos=0)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def ha(mosquitto: Mosquitto) -> Iterator[HaListener]:
    listener = HaListener(mosquitto)
    yield listener
    listener.close()


def _discovery(messages: dict[str, bytes], device_id: str) -> dict[str, dict[str, object]]:
    node = f"camfleet_{device_id}"
    return {
        t: json.loads(p)
        for t, p in messages.items()
        if t.startswith("homeassistant/") and f"/{node}/" in t and p
    }


def test_discovery_valid_availability_follows_presence_button_captures(  # type: ignore[no-untyped-def]
    controllers, devices, ha
) -> None:
    ctl = controllers()

    def capture(dev, cmd):  # type: ignore[no-untyped-def]
        dev.publish_frame(dev.make_frame(data=picture_jpeg(dev.next_seq), command_id=cmd.id))

    dev = devices("ha", on_capture=capture)
    d = dev.device_id
    availability = f"camfleet/ha/{d}/availability"
    ha.wait_value(availability, b"online")
    ha.wait(lambda m: len(_discovery(m, d)) == 6)

    # Every discovery payload passes HA's schema for its platform, with default_entity_id
    # and without the deprecated object_id.
    found = _discovery(ha.messages, d)
    platforms = sorted(t.split("/")[1] for t in found)
    assert platforms == ["button", "camera", "sensor", "sensor", "sensor", "sensor"]
    referenced: set[str] = set()
    for topic, payload in found.items():
        component = topic.split("/")[1]
        config = ha_schema.validate(component, payload)
        assert "object_id" not in payload, topic
        assert config["default_entity_id"].startswith(f"{component}.camfleet_{d}")
        referenced |= {
            str(payload[k])
            for k in ("topic", "state_topic", "command_topic", "availability_topic")
            if k in payload
        }
    assert topics.ha_discovery_topic(d) in found  # the camera keeps its topic
    unique_ids = [p["unique_id"] for p in found.values()]
    assert len(set(unique_ids)) == len(unique_ids)

    # Telemetry and a live frame reach the entities' topics; the JPEG opens with Pillow.
    dev.publish_raw(
        Kind.TELEMETRY.value,
        codec.encode(
            telemetry_pb2.Telemetry(
                timestamp_ms=1, session=dev.session, battery_pct=87.5, rssi_dbm=-61
            )
        ),
    )
    frame = dev.make_frame(data=picture_jpeg(1))
    dev.publish_frame(frame)
    jpeg_topic = topics.latest_jpeg_topic(d)
    ha.wait(lambda m: f"camfleet/ha/{d}/telemetry" in m and jpeg_topic in m)
    ha.wait(lambda m: f"camfleet/ha/{d}/last_frame" in m)
    assert json.loads(ha.messages[f"camfleet/ha/{d}/telemetry"]) == {
        "battery_pct": 87.5,
        "rssi_dbm": -61,
        "spool_depth": None,
    }
    with Image.open(io.BytesIO(ha.messages[jpeg_topic])) as image:
        assert image.format == "JPEG" and image.size == (320, 240)
    assert ha.messages[f"camfleet/ha/{d}/last_frame"].decode().endswith("+00:00")
    # Every topic an entity reads or writes is one the controller maintains.
    assert referenced <= {*ha.messages, f"camfleet/ha/{d}/capture"}, referenced - set(ha.messages)

    # The button: a press becomes a capture command through the controller, which the device
    # runs; its frame is stored.
    ha.press(f"camfleet/ha/{d}/capture")
    assert dev.wait_until(lambda: any(c.ran for c in dev.commands), timeout=20)
    command_id = dev.commands[0].command.id
    with ctl.db.read() as tx:
        row = tx.one("SELECT action FROM commands WHERE id = ?", (command_id,))
    assert row is not None and row["action"] == "capture"

    # Asleep, then awake, then the will: availability follows.
    dev.sleep(600)
    ha.wait_value(availability, b"asleep")
    dev.wake()
    ha.wait_value(availability, b"online")
    assert dev.client is not None
    dev.client.loop_stop()
    sock = dev.client.socket()
    assert sock is not None
    sock.close()  # no DISCONNECT: the broker publishes the will
    ha.wait_value(availability, b"offline")


def test_button_for_an_unknown_device_creates_nothing(controllers, devices, ha) -> None:  # type: ignore[no-untyped-def]
    ctl = controllers()
    dev = devices("known")
    ha.wait_value(f"camfleet/ha/{dev.device_id}/availability", b"online")
    ha.press("camfleet/ha/nobody/capture")
    ha.client.publish(f"camfleet/ha/{dev.device_id}/capture", b"NOT A PRESS")
    # One worker takes presses in order: the known device's command proves the others were
    # handled before it.
    ha.press(f"camfleet/ha/{dev.device_id}/capture")
    assert dev.wait_until(lambda: len(dev.commands) == 1, timeout=20)
    with ctl.db.read() as tx:
        rows = tx.query("SELECT device_id FROM commands")
    assert [r["device_id"] for r in rows] == [dev.device_id]


def test_schema_rules_refuse_what_ha_refuses() -> None:
    """The transcribed rules are not a rubber stamp."""
    good = {"state_topic": "a/b", "device_class": "battery", "unit_of_measurement": "%"}
    ha_schema.validate("sensor", good)
    for bad in (
        {**good, "unit_of_measurement": "mV"},
        {**good, "state_topic": "a/#/b"},
        {**good, "device_class": "enum", "unit_of_measurement": None, "state_class": "total"},
        {**good, "unknown_key": 1},
        {**good, "default_entity_id": "camera.x"},
    ):
        with pytest.raises(vol.Invalid):
            ha_schema.validate("sensor", bad)
    with pytest.raises(vol.Invalid):
        ha_schema.validate("button", {"command_topic": "a/+/capture"})
    with pytest.raises(vol.Invalid):
        ha_schema.validate("camera", {"topic": "t", "device": {"name": "x"}})
