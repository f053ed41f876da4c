"""The node's protobuf code (esp32_node/pb.py + schemas.py), run under real MicroPython, is
byte-compatible with the generated classes: it decodes what camfleet.proto encodes, and encodes
the same bytes back (field order, packed repeats, zigzag, maps sorted, optional zeros)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from google.protobuf.message import Message

from camfleet.esp32_node.tools.hostdevice import MICROPYTHON, NODE_DIR
from camfleet.proto import codec
from camfleet.proto.receipts import make_receipt, make_receipts
from camfleet.proto.v1 import command_pb2, common_pb2, config_pb2, ota_pb2

MP_SCRIPT = Path(__file__).parents[1] / "mp" / "pb_roundtrip.py"


def run_node_codec(tmp_path: Path, cases: list[tuple[str, Message]]) -> list[dict]:
    data = [[name, codec.encode(msg).hex()] for name, msg in cases]
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(data))
    out = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=640K", str(MP_SCRIPT), str(path)],
        env={"MICROPYPATH": f"{NODE_DIR}:{NODE_DIR / 'host'}:.frozen"},
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def full_config() -> config_pb2.DeviceConfig:
    cfg = config_pb2.DeviceConfig(
        stay_awake_until_ms=1_700_000_000_123,
        telemetry_interval_s=0,  # optional zero: present, must survive
        max_payload=65536,
        spool_max_frames=9,
        spool_max_bytes=1 << 33,
        extra={"b": "2", "a": "1"},
    )
    cfg.camera.CopyFrom(
        common_pb2.CameraSettings(
            width=800,
            height=600,
            jpeg_quality=70,
            brightness=-40,
            contrast=100,
            saturation=-100,
            hflip=True,
            vflip=False,
            white_balance=common_pb2.WHITE_BALANCE_CLOUDY,
            effect=common_pb2.EFFECT_SEPIA,
            analogue_gain=1.5,
            warmup_frames=3,
            backend={"aec": "on"},
        )
    )
    cfg.schedule.interval_s = 600
    cfg.schedule.daily_times_s.extend([43200, 0, 86399])
    cfg.schedule.motion_burst_count = 4
    cfg.sleep.deep_sleep = True
    cfg.sleep.ext1_pins.extend([2, 4])
    cfg.sleep.ext0_pin = 13
    cfg.firmware.version = "1.2.3"
    cfg.firmware.sha256 = bytes(range(32))
    return cfg


def test_controller_messages_decode_and_reencode_byte_for_byte(tmp_path):
    offer = command_pb2.OtaOffer(
        artifact_id="a1",
        version="2.0.0",
        size=1_500_000,
        sha256=b"\x01" * 32,
        block_size=4096,
        scheme=command_pb2.SIGNATURE_SCHEME_HMAC_SHA256,
        signature=b"\x02" * 32,
        platform="esp32",
    )
    cases: list[tuple[str, Message]] = [
        ("DESIRED", config_pb2.Desired(version=7, updated_at_ms=-5, config=full_config())),
        ("COMMAND", command_pb2.Command(id="c1", expires_at_ms=99, ota_offer=offer)),
        (
            "COMMAND",
            command_pb2.Command(
                id="c2",
                group="garden",
                capture=command_pb2.CaptureNow(
                    count=3,
                    overrides=common_pb2.CameraSettings(width=320, height=240),
                    metadata={"k": "v"},
                ),
            ),
        ),
        ("COMMAND", command_pb2.Command(id="c3", stay_awake=command_pb2.StayAwake(seconds=60))),
        ("COMMAND", command_pb2.Command(id="c4", reannounce=command_pb2.Reannounce())),
        ("RECEIPT", make_receipt([(3, 1), (3, 2), (3, 3), (4, 9)], timestamp_ms=123)),
        ("RECEIPT", make_receipts({b"\x00inc-id\xff": [(3, 1), (3, 2)], b"": [(4, 9)]}, 5)[0]),
        (
            "OTA_BLOCK",
            ota_pb2.OtaBlock(
                artifact_id="a1", index=5, total_blocks=9, sha256=b"\x03" * 32, data=b"\xe9" * 4096
            ),
        ),
    ]
    results = run_node_codec(tmp_path, cases)
    for (_name, msg), result in zip(cases, results, strict=True):
        assert bytes.fromhex(result["encoded"]) == codec.encode(msg), msg

    desired = results[0]["decoded"]
    assert desired["version"] == 7 and desired["updated_at_ms"] == -5
    cam = desired["config"]["camera"]
    assert (cam["brightness"], cam["saturation"], cam["contrast"]) == (-40, -100, 100)
    assert cam["vflip"] is False and cam["hflip"] is True
    assert cam["analogue_gain"] == 1.5
    assert desired["config"]["schedule"]["daily_times_s"] == [43200, 0, 86399]
    assert desired["config"]["telemetry_interval_s"] == 0
    assert desired["config"]["spool_max_bytes"] == 1 << 33
    assert results[1]["decoded"]["ota_offer"]["size"] == 1_500_000
    assert results[2]["decoded"]["capture"]["overrides"] == {"width": 320, "height": 240}
    assert "reannounce" in results[4]["decoded"]
    assert results[5]["decoded"]["stored"] == [
        {"session": 3, "first_seq": 1, "last_seq": 3},
        {"session": 4, "first_seq": 9, "last_seq": 9},
    ]
    assert results[6]["decoded"]["stored"] == [
        {"session": 4, "first_seq": 9, "last_seq": 9},
        {"session": 3, "first_seq": 1, "last_seq": 2, "incarnation": {"hex": "00696e632d6964ff"}},
    ]
    assert results[7]["decoded"]["data"]["hex"] == "e9" * 4096


def test_unknown_fields_are_skipped(tmp_path):
    cmd = command_pb2.Command(id="c9", reboot=command_pb2.Reboot(delay_ms=5))
    raw = codec.encode(cmd) + b"\xa8\x1f\x01"  # field 501, varint: a newer controller's field
    msg = command_pb2.Command()
    msg.ParseFromString(raw)
    result = run_node_codec(tmp_path, [("COMMAND", msg)])[0]
    assert result["decoded"] == {"id": "c9", "reboot": {"delay_ms": 5}}
