"""Provisioning through a real NVS partition image (esp-idf-nvs-partition-gen)."""

from __future__ import annotations

import json
import subprocess
import sys

from camfleet.esp32_node.tools.provision import NVS_SIZE, make_nvs_image, read_nvs_image
from camfleet.proto.v1 import state_pb2
from tests.esp32.conftest import DEVICE_KEY, node_config


def test_image_round_trips_ints_texts_and_multi_chunk_blobs():
    settings = {
        "device_id": "cam-lobby",
        "mqtt_port": 8883,
        "wdt_ms": -1,
        "hmac_key": DEVICE_KEY,
        "cfg": bytes(range(256)) * 30,  # 7680 bytes: spread over pages in several chunks
    }
    image = make_nvs_image(settings)
    assert len(image) == NVS_SIZE
    assert make_nvs_image(settings) == image  # deterministic
    back = read_nvs_image(image)
    assert back == {k: v.encode() if isinstance(v, str) else v for k, v in settings.items()}


def test_node_boots_from_a_provisioned_image(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto)
    image = make_nvs_image(
        {
            "device_id": "cam-from-image",
            "wifi_ssid": "lab",
            "wifi_pass": "secret",
            "mqtt_host": mosquitto.host,
            "mqtt_port": mosquitto.port,
            "hmac_key": DEVICE_KEY,
            "cfg": node_config(),
        }
    )
    dev.load_nvs_image(image)
    dev.device_id = "cam-from-image"
    rx = receiver_for(mosquitto, dev)

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    assert rx.of("state")[0].presence == state_pb2.PRESENCE_ONLINE
    assert (1, 1) in rx.frames


def test_cli_writes_an_image_and_reports_bad_input_in_one_line(tmp_path):
    good = tmp_path / "settings.json"
    good.write_text(json.dumps({"device_id": "cam-9", "mqtt_port": 1883, "hmac_key": "hex:00ff"}))
    out = tmp_path / "nvs.bin"
    cmd = [sys.executable, "-m", "camfleet.esp32_node.tools.provision"]
    run = subprocess.run([*cmd, str(good), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert read_nvs_image(out.read_bytes())["hmac_key"] == b"\x00\xff"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a-key-longer-than-15": 1}))
    run = subprocess.run([*cmd, str(bad), str(out)], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "camfleet: error: NVS key 'a-key-longer-than-15' must be 1-15 characters"
    ]
