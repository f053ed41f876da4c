"""What firmware runs: the esp_app_desc_t of the running app partition.

ESP-IDF places ``esp_app_desc_t`` (magic 0xABCD5432, version, project name, ...) at offset 0x20
of every app image, so the node reads its own version from flash instead of a constant that
could disagree with the image the bootloader started.
"""

import struct

import esp32

APP_DESC_OFFSET = 0x20
APP_DESC_MAGIC = 0xABCD5432
IMAGE_MAGIC = 0xE9
CHIP_ID_ESP32 = 0


def _cstr(raw):
    end = raw.find(b"\x00")
    return str(raw if end < 0 else raw[:end], "utf-8")


def parse_app_desc(block):
    """(version, project) from the first bytes of an app image, or None when it is not one."""
    if len(block) < APP_DESC_OFFSET + 80 or block[0] != IMAGE_MAGIC:
        return None
    magic = struct.unpack_from("<I", block, APP_DESC_OFFSET)[0]
    if magic != APP_DESC_MAGIC:
        return None
    version = _cstr(bytes(block[APP_DESC_OFFSET + 16 : APP_DESC_OFFSET + 48]))
    project = _cstr(bytes(block[APP_DESC_OFFSET + 48 : APP_DESC_OFFSET + 80]))
    return version, project


def chip_id(block):
    return struct.unpack_from("<H", block, 12)[0]


def running():
    """(slot label, version) of the running app."""
    part = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]
    label = part.info()[4]
    buf = bytearray(256)
    part.readblocks(0, buf)
    desc = parse_app_desc(buf)
    return label, desc[0] if desc else "unknown"
