"""ESP-IDF partition tables: parse the CSV, check it, and build the binary the bootloader reads.

Binary format (ESP-IDF gen_esp32part): 32-byte entries ``<2sBBII16sI`` with magic AA 50, then an
MD5 row (EB EB, 14 x FF, MD5 of the entries), padded with FF to 0xC00; it is flashed at 0x8000,
so the first partition starts at 0x9000 or later.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

TABLE_OFFSET = 0x8000
TABLE_SIZE = 0xC00
FLASH_4MB = 4 * 1024 * 1024
APP_ALIGN = 0x10000
DATA_ALIGN = 0x1000
ENTRY = struct.Struct("<2sBBII16sI")
MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14
TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {
    "app": {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}},
    "data": {
        "ota": 0x00,
        "phy": 0x01,
        "nvs": 0x02,
        "coredump": 0x03,
        "nvs_keys": 0x04,
        "fat": 0x81,
        "spiffs": 0x82,
        "littlefs": 0x83,
    },
}


@dataclass(frozen=True)
class Partition:
    name: str
    type: str
    subtype: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


def _num(text: str) -> int:
    t = text.strip().upper()
    if t.endswith("K"):
        return int(t[:-1], 0) * 1024
    if t.endswith("M"):
        return int(t[:-1], 0) * 1024 * 1024
    return int(t, 0)


def parse_csv(text: str) -> list[Partition]:
    parts = []
    for raw in text.splitlines():
        line = raw.split("#")[0].strip()
        if not line:
            continue
        cols = [c.strip() for c in line.split(",")]
        parts.append(Partition(cols[0], cols[1], cols[2], _num(cols[3]), _num(cols[4])))
    return parts


def load(path: Path) -> list[Partition]:
    return parse_csv(Path(path).read_text())


def problems(parts: list[Partition], flash_size: int = FLASH_4MB) -> list[str]:
    """Everything wrong with a table: alignment, overlap, size, missing OTA pieces."""
    out = []
    prev_end = TABLE_OFFSET + 0x1000
    for p in sorted(parts, key=lambda p: p.offset):
        align = APP_ALIGN if p.type == "app" else DATA_ALIGN
        if p.offset % align:
            out.append(f"{p.name}: offset {p.offset:#x} not aligned to {align:#x}")
        if p.size % DATA_ALIGN:
            out.append(f"{p.name}: size {p.size:#x} not a multiple of {DATA_ALIGN:#x}")
        if p.offset < prev_end:
            out.append(f"{p.name}: starts at {p.offset:#x}, overlapping what ends at {prev_end:#x}")
        if p.subtype not in SUBTYPES.get(p.type, {}):
            out.append(f"{p.name}: unknown {p.type} subtype {p.subtype}")
        prev_end = max(prev_end, p.end)
    if prev_end > flash_size:
        out.append(f"table ends at {prev_end:#x}, beyond the {flash_size:#x}-byte flash")
    slots = [p for p in parts if p.type == "app" and p.subtype.startswith("ota_")]
    if len(slots) < 2:
        out.append(f"{len(slots)} OTA app slot(s): two are needed for updates with rollback")
    elif len({p.size for p in slots}) != 1:
        out.append("OTA slots differ in size: an image that fits one may not fit the other")
    otadata = [p for p in parts if p.type == "data" and p.subtype == "ota"]
    if len(otadata) != 1 or otadata[0].size != 0x2000:
        out.append("one 0x2000-byte otadata partition is needed (two sectors)")
    if not any(p.subtype == "nvs" for p in parts):
        out.append("no nvs partition")
    return out


def to_binary(parts: list[Partition]) -> bytes:
    body = b"".join(
        ENTRY.pack(
            MAGIC, TYPES[p.type], SUBTYPES[p.type][p.subtype], p.offset, p.size, p.name.encode(), 0
        )
        for p in parts
    )
    table = body + MD5_MAGIC + hashlib.md5(body).digest()
    return table + b"\xff" * (TABLE_SIZE - len(table))


def from_binary(data: bytes) -> list[Partition]:
    """Read a binary table back (checking its MD5 row)."""
    names = {
        v: {n: k for k, n in subs.items()}
        for v, subs in ((TYPES[t], s) for t, s in SUBTYPES.items())
    }
    parts = []
    pos = 0
    while data[pos : pos + 2] == MAGIC:
        _m, typ, sub, off, size, label, _flags = ENTRY.unpack_from(data, pos)
        tname = "app" if typ == 0 else "data"
        parts.append(Partition(label.rstrip(b"\x00").decode(), tname, names[typ][sub], off, size))
        pos += ENTRY.size
    if (
        data[pos : pos + 16] != MD5_MAGIC
        or data[pos + 16 : pos + 32] != hashlib.md5(data[:pos]).digest()
    ):
        raise ValueError("partition table MD5 row missing or wrong")
    return parts
