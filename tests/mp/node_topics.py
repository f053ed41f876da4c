"""Run under MicroPython: print the node's topic scheme as JSON (tests/esp32/test_topics.py)."""

import json
import sys

import node

root, device_id, group = sys.argv[1], sys.argv[2], sys.argv[3]
print(
    json.dumps(
        {
            "publishes": {k: node.device_topic(root, device_id, k) for k in node.PUBLISHES},
            "subscribes": {k: node.device_topic(root, device_id, k) for k in node.SUBSCRIBES},
            "group": node.group_cmd_topic(root, group),
        }
    )
)
