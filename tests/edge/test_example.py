"""edge/edge.example.toml, run as the README says: it captures, and its state stays out of the
source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from camfleet.mosquitto import Mosquitto
from camfleet.proto import codec, topics
from camfleet.proto.topics import Kind
from tests.proto.mqtt_helpers import Subscriber

REPO = Path(__file__).resolve().parents[2]


def test_the_example_config_captures_and_keeps_its_state_outside_the_tree(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    example = (REPO / "edge" / "edge.example.toml").read_text()
    assert 'url = "mqtt://127.0.0.1:1883"' in example
    config = tmp_path / "edge" / "edge.toml"  # the example, pointed at this test's broker
    config.parent.mkdir()
    config.write_text(example.replace("mqtt://127.0.0.1:1883", mosquitto.url))
    frames = Subscriber(mosquitto.host, mosquitto.port, [topics.device_filter(Kind.FRAME)])
    agent = subprocess.Popen(
        [sys.executable, "-m", "camfleet", "edge", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        received = frames.get(timeout=60)  # the example's schedule, no command needed
    finally:
        agent.terminate()
        agent.wait(60)
        frames.close()
    assert received.topic == topics.device_topic("garden-cam", Kind.FRAME)
    assert codec.decode_message(received.topic, received.payload)[1].message.data[:2] == b"\xff\xd8"
    state = Path(os.environ["XDG_STATE_HOME"], "camfleet", "edge", "garden-cam")
    assert (state / "session").exists()
    assert [p.name for p in config.parent.iterdir()] == ["edge.toml"]
