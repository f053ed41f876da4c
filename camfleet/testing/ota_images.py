"""Signed ESP32 app images for OTA tests and benchmarks: release keys made with espsecure,
images built with esptool's classes (esp32_node/tools/images.py) and signed with
``espsecure sign-data --version 2`` (what ``camfleet ota sign`` runs)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from camfleet.esp32_node.tools.images import DROM_ADDR, IROM_ADDR, app_desc, make_app_image


@dataclass(frozen=True)
class ReleaseKey:
    private: Path
    public: Path


def espsecure(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "espsecure", *args], check=True, capture_output=True)


def make_key(directory: Path, name: str) -> ReleaseKey:
    directory.mkdir(parents=True, exist_ok=True)
    priv, pub = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    espsecure("generate-signing-key", "--version", "2", "--scheme", "rsa3072", str(priv))
    espsecure("extract-public-key", "--version", "2", "--keyfile", str(priv), str(pub))
    return ReleaseKey(priv, pub)


def sign(image: bytes, key: ReleaseKey, workdir: Path) -> bytes:
    name = hashlib.sha256(image).hexdigest()[:16]
    src, out = workdir / f"{name}.bin", workdir / f"{name}.signed.bin"
    src.write_bytes(image)
    espsecure("sign-data", "--version", "2", "--keyfile", str(key.private), "--output", str(out),
              str(src))  # fmt: skip
    return out.read_bytes()


def signed_image(version: str, size: int, key: ReleaseKey, workdir: Path, seed: int = 0) -> bytes:
    return sign(make_app_image(version, size, seed=seed), key, workdir)


def s3_image(version: str) -> bytes:
    """A valid app image for the ESP32-S3 (chip id 9), built with esptool's S3 image class."""
    from esptool.bin_image import ELFSection, ESP32S3FirmwareImage

    image = ESP32S3FirmwareImage()
    image.entrypoint = IROM_ADDR
    image.append_hash_digest = True
    image.segments = [
        ELFSection(b".flash.appdesc", DROM_ADDR, app_desc(version), flags=0),
        ELFSection(b".flash.text", IROM_ADDR, b"\x00" * 8192, flags=0),
    ]
    out = image.save(None)
    assert out is not None
    return bytes(out)
