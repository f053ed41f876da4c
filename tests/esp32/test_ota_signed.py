"""The emulated chip's signed-app check on update (ESP-IDF CONFIG_SECURE_SIGNED_ON_UPDATE_NO_
SECURE_BOOT, Secure Boot V2 RSA): whoever can send a correctly HMAC-ed offer (a broker or
controller compromise) still cannot make a node boot an image the release key did not sign."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from camfleet.esp32_node.tools.images import make_app_image
from camfleet.proto.v1 import command_pb2, state_pb2
from camfleet.testing.esp32_receiver import OtaImage
from tests.esp32.conftest import DEVICE_KEY
from tests.ota_helpers import ReleaseKey, other_key, release_key, signed_image

__all__ = ["other_key", "release_key"]  # fixtures

OTA_VALID = 2


def _forged_signature(key: ReleaseKey, tmp: Path) -> bytes:
    """Signed by the release key, then one byte of the RSA signature changed (CRC fixed)."""
    data = bytearray(signed_image("1.1.0", 120_000, key, tmp, seed=8))
    blk = len(data) - 4096
    data[blk + 900] ^= 0x01
    struct.pack_into("<I", data, blk + 1196, zlib.crc32(bytes(data[blk : blk + 1196])))
    return bytes(data)


def _altered_app(key: ReleaseKey, tmp: Path) -> bytes:
    """Another app (valid checksum and SHA-256) behind the release key's signature sector."""
    signed = signed_image("1.1.0", 120_000, key, tmp, seed=9)
    app = make_app_image("1.1.0", 120_000, seed=10)
    return app + b"\xff" * (len(signed) - 4096 - len(app)) + signed[-4096:]


@pytest.mark.parametrize(
    ("forgery", "reason"),
    [
        ("other_key", "image signed by a key the running app does not trust"),
        ("altered_app", "signature block does not match the image"),
        ("forged_signature", "bad RSA-PSS signature"),
        ("unsigned", "image has no valid signature block"),
    ],
)
def test_image_not_signed_by_the_release_key_never_boots(
    mosquitto, make_device, receiver_for, release_key, other_key, tmp_path, forgery, reason
):  # type: ignore[no-untyped-def]
    images = {
        "other_key": lambda: signed_image("1.1.0", 120_000, other_key, tmp_path, seed=7),
        "altered_app": lambda: _altered_app(release_key, tmp_path),
        "forged_signature": lambda: _forged_signature(release_key, tmp_path),
        "unsigned": lambda: make_app_image("1.1.0", 120_000, seed=11),
    }
    factory = signed_image("1.0.0", 60_000, release_key, tmp_path)
    dev = make_device(mosquitto, factory_image=factory)
    rx = receiver_for(mosquitto, dev)
    assert dev.run_wake().ended == "deepsleep"
    img = OtaImage("fw-evil", images[forgery]())
    rx.ota = img
    # the HMAC is right: the offer passes the node's first wall, the signature is the second
    rx.send_command(command_pb2.Command(id="ota-1", ota_offer=img.offer(DEVICE_KEY, "1.1.0")))

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output  # no reset into the new slot
    acks = {a.command_id: a for a in rx.of("ack")}
    assert acks["ota-1"].status == command_pb2.ACK_STATUS_FAILED
    assert acks["ota-1"].detail == ("refused by the boot verification: ESP_ERR_OTA_VALIDATE_FAILED")
    assert f"E secure_boot_v2: {reason}" in woke.output  # what ESP-IDF logs
    assert img.served == img.total_blocks  # downloaded and SHA-256/HMAC-checked in full
    assert dev.otadata() is None  # set_boot refused: otadata untouched
    assert "ota_offer" not in dev.read_nvs()  # the offer is forgotten, not fetched again
    assert dev.run_wake().ended == "deepsleep"
    births = [s for s in rx.of("state") if s.presence == state_pb2.PRESENCE_ONLINE]
    assert births[-1].firmware_version == "1.0.0" and births[-1].ota_slot == "ota_0"


def test_image_signed_by_the_release_key_boots_and_is_trusted_next_time(
    mosquitto, make_device, receiver_for, release_key, tmp_path
):  # type: ignore[no-untyped-def]
    dev = make_device(mosquitto, factory_image=signed_image("1.0.0", 60_000, release_key, tmp_path))
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    for n, version in enumerate(("1.1.0", "1.2.0"), start=1):
        img = OtaImage(f"fw-{version}", signed_image(version, 120_000, release_key, tmp_path, n))
        rx.ota = img
        rx.send_command(
            command_pb2.Command(id=f"ota-{n}", ota_offer=img.offer(DEVICE_KEY, version))
        )
        assert dev.run_wake().ended == "hard"
        assert dev.run_wake().ended == "deepsleep"  # first boot: health check, confirmed
        births = [s for s in rx.of("state") if s.presence == state_pb2.PRESENCE_ONLINE]
        assert births[-1].firmware_version == version
        assert OTA_VALID in [state for _, state in dev.otadata() or []]
