"""Provisioning a real node: the NVS partition image with its settings (namespace ``camfleet``).

``make_nvs_image`` writes the CSV ``esp-idf-nvs-partition-gen`` reads and runs it; texts go in as
blobs (``hex2bin``), because MicroPython's ``esp32.NVS`` reads only i32 and blobs. Flash the image
at the nvs partition's offset (0x9000 in firmware/partitions.csv):

    python -m camfleet.esp32_node.tools.provision settings.json nvs.bin
    esptool --chip esp32 --port PORT write-flash 0x9000 nvs.bin

``read_nvs_image`` is a small reader of the same format (4096-byte pages, 32-byte entries,
CRC32), used to check what an image holds; no NVS reader exists on PyPI.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import click

from camfleet.errors import UserError

NAMESPACE = "camfleet"
NVS_SIZE = 0x6000
PAGE = 4096
ENTRY = 32
FIRST_ENTRY = 64
ENTRIES_PER_PAGE = 126
TYPE_U8 = 0x01
TYPE_I32 = 0x14
TYPE_BLOB_DATA = 0x42
TYPE_BLOB_IDX = 0x48


def nvs_csv(settings: dict[str, int | str | bytes], namespace: str = NAMESPACE) -> str:
    lines = ["key,type,encoding,value", f"{namespace},namespace,,"]
    for key, value in settings.items():
        if not 0 < len(key) <= 15:
            raise UserError(f"NVS key {key!r} must be 1-15 characters")
        if isinstance(value, bool) or not isinstance(value, int | str | bytes):
            raise UserError(f"NVS value of {key!r} must be an integer, a string or bytes")
        if isinstance(value, int):
            lines.append(f"{key},data,i32,{value}")
        else:
            raw = value.encode() if isinstance(value, str) else value
            lines.append(f"{key},data,hex2bin,{raw.hex()}")
    return "\n".join(lines) + "\n"


def make_nvs_image(settings: dict[str, int | str | bytes], size: int = NVS_SIZE) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "nvs.csv"
        out = Path(tmp) / "nvs.bin"
        csv.write_text(nvs_csv(settings))
        run = subprocess.run(
            [sys.executable, "-m", "esp_idf_nvs_partition_gen", "generate", csv, out, hex(size)],
            capture_output=True,
            text=True,
        )
        # the generator can exit 0 having written nothing (bad size) or a 0-byte file
        if run.returncode != 0 or not out.exists() or out.stat().st_size != size:
            raise UserError(
                f"esp-idf-nvs-partition-gen failed: {run.stdout[-300:]}{run.stderr[-300:]}"
            )
        return out.read_bytes()


def _entry_crc(entry: bytes) -> int:
    # ESP-IDF seeds its CRC32 with 0xFFFFFFFF (zlib.crc32(data, 0xFFFFFFFF))
    return zlib.crc32(entry[0:4] + entry[8:32], 0xFFFFFFFF) & 0xFFFFFFFF


def read_nvs_image(image: bytes, namespace: str = NAMESPACE) -> dict[str, int | bytes]:
    """i32 and blob values of ``namespace`` in an NVS image (format version 2)."""
    namespaces: dict[int, str] = {}
    i32: dict[tuple[int, str], int] = {}
    chunks: dict[tuple[int, str], dict[int, bytes]] = {}
    sizes: dict[tuple[int, str], int] = {}
    for p in range(0, len(image), PAGE):
        page = image[p : p + PAGE]
        if page[:4] == b"\xff\xff\xff\xff":
            continue  # empty page
        bitmap = page[32:64]
        i = 0
        while i < ENTRIES_PER_PAGE:
            state = (bitmap[i // 4] >> ((i % 4) * 2)) & 3
            off = FIRST_ENTRY + i * ENTRY
            entry = page[off : off + ENTRY]
            if state != 0b10:  # not "written"
                i += 1
                continue
            ns, typ, span, chunk = entry[0], entry[1], entry[2], entry[3]
            crc = struct.unpack_from("<I", entry, 4)[0]
            if crc != _entry_crc(entry):
                raise ValueError(f"bad entry CRC at page {p // PAGE} entry {i}")
            key = entry[8:24].split(b"\x00")[0].decode()
            data = entry[24:32]
            if ns == 0 and typ == TYPE_U8:
                namespaces[data[0]] = key
            elif typ == TYPE_I32:
                i32[(ns, key)] = struct.unpack_from("<i", data)[0]
            elif typ == TYPE_BLOB_DATA:
                length = struct.unpack_from("<H", data)[0]
                body = page[off + ENTRY : off + ENTRY * span][:length]
                chunks.setdefault((ns, key), {})[chunk] = body
            elif typ == TYPE_BLOB_IDX:
                sizes[(ns, key)] = struct.unpack_from("<I", data)[0]
            i += max(1, span)
    wanted = {n for n, name in namespaces.items() if name == namespace}
    out: dict[str, int | bytes] = {k: v for (n, k), v in i32.items() if n in wanted}
    for (n, key), parts in chunks.items():
        if n in wanted:
            blob = b"".join(parts[c] for c in sorted(parts))
            if (n, key) in sizes and len(blob) != sizes[(n, key)]:
                raise ValueError(f"blob {key!r}: {len(blob)} bytes, index says {sizes[(n, key)]}")
            out[key] = blob
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("settings_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def main(settings_json: Path, output: Path) -> None:
    """Write the NVS image for SETTINGS_JSON ({"device_id": "cam-1", "mqtt_port": 1883, ...})."""
    try:
        settings = json.loads(settings_json.read_text())
    except ValueError as e:
        raise UserError(f"{settings_json}: not JSON: {e}") from None
    if not isinstance(settings, dict):
        raise UserError(f"{settings_json}: expected an object of NVS keys")
    values = {k: bytes.fromhex(v[4:]) if isinstance(v, str) and v.startswith("hex:") else v
              for k, v in settings.items()}  # fmt: skip
    output.write_bytes(make_nvs_image(values))
    click.echo(f"{output}: {NVS_SIZE} bytes, {len(values)} keys in namespace {NAMESPACE}")


if __name__ == "__main__":
    try:
        main(standalone_mode=True)
    except UserError as e:
        click.echo(f"camfleet: error: {e}", err=True)
        sys.exit(2)
