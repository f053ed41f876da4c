"""JPEG encoding for backends that hand over pixels, plus EXIF tags and preview copies.

Two encoders: Pillow (always present; its wheels bundle libjpeg-turbo) and simplejpeg
(``pip install 'camfleet[fastjpeg]'``, libjpeg-turbo straight from a numpy array). Measured by
bench/edge_capture.py (docs/performance.md): simplejpeg is 1.1-1.3x faster than Pillow for an
RGB array but 3-4x slower for a PIL image (the array conversion costs more than the encode), so
``auto`` uses simplejpeg for arrays (opencv, maix) when installed and Pillow for PIL images.
"""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from camfleet.errors import UserError

ENCODERS = ("auto", "pillow", "simplejpeg")


def available_encoder(name: str = "auto") -> str:
    """Check an encoder name; refuse ``simplejpeg`` when it is not installed.

    ``auto`` stays ``auto``: :func:`encode` picks per image type.
    """
    if name not in ENCODERS:
        raise UserError(f"unknown JPEG encoder {name!r}: use one of {', '.join(ENCODERS)}")
    if name == "simplejpeg" and not _has_simplejpeg():
        raise UserError(
            "JPEG encoder simplejpeg is not installed: pip install 'camfleet[fastjpeg]'"
        )
    return name


def _has_simplejpeg() -> bool:
    try:
        import simplejpeg  # noqa: F401
    except ImportError:
        return False
    return True


def encode(image: Image.Image | Any, quality: int, encoder: str = "auto") -> bytes:
    """Encode a PIL image or an HxWx3 RGB uint8 array as baseline 4:2:0 JPEG at ``quality``."""
    is_pil = isinstance(image, Image.Image)
    if encoder == "auto":
        encoder = "simplejpeg" if not is_pil and _has_simplejpeg() else "pillow"
    if encoder == "simplejpeg":
        import numpy as np
        import simplejpeg

        array = np.ascontiguousarray(image.convert("RGB") if is_pil else image)
        return bytes(
            simplejpeg.encode_jpeg(array, quality=quality, colorspace="RGB", colorsubsampling="420")
        )
    if not is_pil:
        image = Image.fromarray(image)
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def preview(jpeg: bytes, max_side: int, quality: int = 70) -> bytes:
    """A resized copy whose longer side is at most ``max_side`` (the original when smaller)."""
    with Image.open(io.BytesIO(jpeg)) as img:
        if max(img.size) <= max_side:
            return jpeg
        img.draft("RGB", (max_side, max_side))  # DCT scaling: decode at 1/2, 1/4, 1/8 directly
        copy = img.convert("RGB")
        copy.thumbnail((max_side, max_side))
        out = io.BytesIO()
        copy.save(out, "JPEG", quality=quality)
        return out.getvalue()


# EXIF tag numbers (TIFF/EXIF 2.3).
_IMAGE_DESCRIPTION = 0x010E
_MAKE = 0x010F
_MODEL = 0x0110
_SOFTWARE = 0x0131
_DATETIME = 0x0132
_ARTIST = 0x013B
_GPS_IFD = 0x8825


def exif_bytes(
    *,
    device_id: str,
    captured_at_ms: int,
    board: str = "",
    software: str = "camfleet",
    location: dict[str, Any] | None = None,
) -> bytes:
    """EXIF APP1 payload (``Exif\\0\\0`` + TIFF) with device, time and optional GPS location."""
    exif = Image.Exif()
    exif[_ARTIST] = device_id
    exif[_MAKE] = "camfleet"
    if board:
        exif[_MODEL] = board
    exif[_SOFTWARE] = software
    if captured_at_ms:
        when = datetime.fromtimestamp(captured_at_ms / 1000, UTC)
        exif[_DATETIME] = when.strftime("%Y:%m:%d %H:%M:%S")
    if location:
        name = location.get("name")
        if name:
            exif[_IMAGE_DESCRIPTION] = str(name)
        if "lat" in location and "lon" in location:
            exif[_GPS_IFD] = _gps(float(location["lat"]), float(location["lon"]))
    data = exif.tobytes()
    return data if data.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + data


def _gps(lat: float, lon: float) -> dict[int, Any]:
    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        seconds = round(((value - degrees) * 60 - minutes) * 60, 4)
        return (float(degrees), float(minutes), seconds)

    return {
        1: "N" if lat >= 0 else "S",
        2: dms(lat),
        3: "E" if lon >= 0 else "W",
        4: dms(lon),
    }


def with_exif(jpeg: bytes, exif: bytes) -> bytes:
    """Insert an APP1 EXIF segment without re-encoding the image.

    It goes right after SOI, or after a leading JFIF APP0 (where JFIF wants its marker and
    tools such as exiftool put EXIF); an existing EXIF APP1 (from the camera) is replaced, so
    the file has exactly one.
    """
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG (no SOI marker)")
    if len(exif) + 2 > 0xFFFF:
        raise ValueError("EXIF block too large for one APP1 segment")
    head, rest = b"\xff\xd8", jpeg[2:]
    if rest[:2] == b"\xff\xe0":  # JFIF APP0 stays first
        (length,) = struct.unpack(">H", rest[2:4])
        head, rest = head + rest[: 2 + length], rest[2 + length :]
    if rest[:2] == b"\xff\xe1" and rest[4:10] == b"Exif\x00\x00":
        (length,) = struct.unpack(">H", rest[2:4])
        rest = rest[2 + length :]
    return head + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + rest
