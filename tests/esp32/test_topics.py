"""The node's topic strings (esp32_node/node.py, run under real MicroPython) are the ones
proto/topics.py defines: the same kinds in each direction, the same formatted topics."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from camfleet.esp32_node.tools.hostdevice import MICROPYTHON, NODE_DIR
from camfleet.proto import topics
from camfleet.proto.topics import CONTROLLER_TO_DEVICE, DEVICE_TO_CONTROLLER

MP_SCRIPT = Path(__file__).parents[1] / "mp" / "node_topics.py"


def test_node_topics_match_the_topic_scheme(tmp_path: Path) -> None:
    root, device, group = "fleet_a", "cam-07", "porch"
    # Importing node.py loads the host port's flash: it needs a partition table, nothing more.
    shutil.copy(NODE_DIR / "firmware" / "partitions.csv", tmp_path)
    out = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=640K", str(MP_SCRIPT), root, device, group],
        env={
            "MICROPYPATH": f"{NODE_DIR}:{NODE_DIR / 'host'}:.frozen",
            "CAMFLEET_ESP32_STATE": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    node = json.loads(out.stdout.splitlines()[-1])
    assert set(node["publishes"]) == {k.value for k in DEVICE_TO_CONTROLLER}
    assert set(node["subscribes"]) == {k.value for k in CONTROLLER_TO_DEVICE}
    for kind, topic in {**node["publishes"], **node["subscribes"]}.items():
        assert topic == topics.device_topic(device, kind, root)
    assert node["group"] == topics.group_cmd_topic(group, root)
    subscribed = [*sorted(node["subscribes"].values()), node["group"]]
    assert subscribed == topics.device_filters(device, (group,), root)
