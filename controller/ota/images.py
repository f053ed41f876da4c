"""Checks of an uploaded ESP32 application image, with esptool's and espsecure's own code.

Signing scheme: **Secure Boot V2, RSA-3072 (RSA-PSS, SHA-256)**, the scheme ESP-IDF uses for the
ESP32 from ECO3 on (``CONFIG_ESP32_REV_MIN_3``). ``espsecure sign-data --version 2`` pads the
image to a 4 KiB boundary and appends a 4 KiB signature sector; the controller verifies that
sector with the release *public* key only. The firmware recipe turns on signed-app verification
on update (esp32_node/firmware/sdkconfig.camfleet), so the device verifies the same signature
before the new slot can boot.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from camfleet.errors import UserError

SECTOR = 4096
APP_DESC_OFFSET = 0x20
APP_DESC_MAGIC = 0xABCD5432
APP_DESC_FMT = "<II8s32s32s16s16s32s32s"
IMAGE_MAGIC = 0xE9
#: esp_chip_id_t at byte 12 of the extended header (ESP-IDF esp_app_format.h).
CHIP_NAMES = {0: "esp32", 2: "esp32s2", 5: "esp32c3", 9: "esp32s3", 12: "esp32c2", 13: "esp32c6"}
FLEET_CHIP = 0  # the fleet's nodes are ESP32 (ESP32-CAM)


class ImageRefused(UserError):
    """An upload that must not become an artifact; the message says why, on one line."""


@dataclass(frozen=True)
class AppImage:
    version: str
    project: str
    idf_version: str
    chip: str
    app_size: int  # the app image without padding and signature sector
    size: int  # what the device downloads (signed image)
    sha256: str


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


def ota_slot_size(partitions_csv: Path | None = None) -> int:
    """Size of the smallest OTA app slot in the node's partition table."""
    from camfleet.esp32_node.tools import partitions

    path = partitions_csv or Path(str(resources.files("camfleet.esp32_node"))) / "firmware" / (
        "partitions.csv"
    )
    slots = [
        p.size for p in partitions.load(path) if p.type == "app" and p.subtype.startswith("ota_")
    ]
    if not slots:
        raise UserError(f"{path}: no OTA app slot")
    return int(min(slots))


def check_app_image(data: bytes, public_key_pem: bytes, slot_size: int) -> AppImage:
    """Parse and verify a signed ESP32 app image; ImageRefused says why it is not acceptable."""
    from esptool.bin_image import LoadFirmwareImage
    from esptool.util import FatalError

    if len(data) < SECTOR * 2 or data[0] != IMAGE_MAGIC:
        raise ImageRefused("not an ESP32 app image (no 0xE9 header)")
    chip_id = struct.unpack_from("<H", data, 12)[0]
    chip = CHIP_NAMES.get(chip_id, f"chip id {chip_id}")
    if chip_id != FLEET_CHIP:
        raise ImageRefused(f"image is for {chip}, the fleet's nodes are esp32")
    try:
        img = LoadFirmwareImage("esp32", data)
    except (FatalError, struct.error, ValueError, IndexError) as exc:
        raise ImageRefused(f"corrupted image: {exc}") from None
    if img.checksum != img.calculate_checksum():
        raise ImageRefused("corrupted image: checksum mismatch")
    if not img.append_digest or img.stored_digest != img.calc_digest:
        raise ImageRefused("corrupted image: SHA-256 digest mismatch")
    app_size = _app_length(data)
    desc = struct.unpack_from(APP_DESC_FMT, data, APP_DESC_OFFSET)
    if desc[0] != APP_DESC_MAGIC:
        raise ImageRefused("no esp_app_desc_t at offset 0x20 (not an ESP-IDF application)")
    padded = (app_size + SECTOR - 1) // SECTOR * SECTOR
    if len(data) != padded + SECTOR:
        raise ImageRefused(
            "unsigned image: no Secure Boot V2 signature sector after the app "
            "(sign it with `camfleet ota sign` or `espsecure sign-data --version 2`)"
        )
    if len(data) > slot_size:
        raise ImageRefused(
            f"image of {len(data)} bytes is larger than the {slot_size}-byte OTA slot"
        )
    verify_signature(data, public_key_pem)
    return AppImage(
        version=_cstr(desc[3]),
        project=_cstr(desc[4]),
        idf_version=_cstr(desc[7]),
        chip=chip,
        app_size=app_size,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _app_length(data: bytes) -> int:
    """Bytes of the app image proper: header, segments, checksum padding, SHA-256."""
    count = data[1]
    pos = 24
    for _ in range(count):
        _, length = struct.unpack_from("<II", data, pos)
        pos += 8 + length
        if pos > len(data):
            raise ImageRefused("corrupted image: a segment runs past the end")
    pos += 1  # checksum byte
    pos = (pos + 15) // 16 * 16
    if data[23]:  # hash_appended
        pos += 32
    return pos


def verify_signature(data: bytes, public_key_pem: bytes) -> None:
    """Secure Boot V2 signature check with espsecure's own verifier."""
    import espsecure
    from esptool.util import FatalError

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            espsecure.verify_signature_v2(False, None, io.BytesIO(public_key_pem), io.BytesIO(data))
    except FatalError as exc:
        text = str(exc)
        if "digest does not match" in text:
            raise ImageRefused(
                "signature block does not match the image (altered after signing)"
            ) from None
        raise ImageRefused("signature not valid for the release public key") from None
    except (ValueError, struct.error) as exc:
        raise ImageRefused(f"signature cannot be checked: {exc}") from None
