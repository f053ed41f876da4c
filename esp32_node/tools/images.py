"""ESP32 app images for the host port and the OTA tests, built and read with esptool's classes.

An image carries an ``esp_app_desc_t`` at the start of its first DROM segment (file offset 0x20),
which is where the node reads its firmware version (esp32_node/firmware_info.py).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from esptool.bin_image import ELFSection, ESP32FirmwareImage, LoadFirmwareImage

APP_DESC_MAGIC = 0xABCD5432
APP_DESC_FMT = "<II8s32s32s16s16s32s32sHHB3s72s"
DROM_ADDR = 0x3F400020
IROM_ADDR = 0x400D0020


def app_desc(version: str, project: str = "camfleet-node") -> bytes:
    return struct.pack(
        APP_DESC_FMT,
        APP_DESC_MAGIC,
        0,
        b"",
        version.encode(),
        project.encode(),
        b"00:00:00",
        b"Nov 21 2026",
        b"v5.2.2",
        b"\x00" * 32,
        0,
        0,
        0,
        b"",
        b"",
    )


def make_app_image(
    version: str, size: int = 0, project: str = "camfleet-node", seed: int = 0
) -> bytes:
    """A valid ESP32 app image (checksum + SHA-256) of about ``size`` bytes (0 = minimal)."""
    desc = app_desc(version, project)
    image = ESP32FirmwareImage()
    image.entrypoint = IROM_ADDR
    image.append_hash_digest = True
    image.segments = [ELFSection(b".flash.appdesc", DROM_ADDR, desc, flags=0)]
    filler = max(16, size - len(desc) - 24 - 16 - 64)
    filler -= filler % 4
    rnd = hashlib.sha256(b"%d" % seed).digest() * (filler // 32 + 1)
    image.segments.append(ELFSection(b".flash.text", IROM_ADDR, rnd[:filler], flags=0))
    out = image.save(None)
    assert out is not None
    return out


@dataclass(frozen=True)
class ImageInfo:
    version: str
    project: str
    checksum_ok: bool
    digest_ok: bool
    chip_id: int


def read_image(data: bytes) -> ImageInfo:
    """Parse and check an app image with esptool (image-info exits 0 even when it is broken)."""
    img = LoadFirmwareImage("esp32", data)
    desc = struct.unpack_from(APP_DESC_FMT, data, 0x20)
    return ImageInfo(
        version=desc[3].rstrip(b"\x00").decode(),
        project=desc[4].rstrip(b"\x00").decode(),
        checksum_ok=img.checksum == img.calculate_checksum(),
        digest_ok=img.stored_digest == img.calc_digest,
        chip_id=struct.unpack_from("<H", data, 12)[0],
    )


def write_app(path: str | os.PathLike[str], data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
