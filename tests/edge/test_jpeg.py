"""EXIF insertion and preview copies (no re-encode of the image data)."""

from __future__ import annotations

import io

from PIL import Image

from camfleet.edge import jpeg


def test_exif_goes_after_jfif_and_replaces_an_existing_one():
    original = jpeg.encode(Image.new("RGB", (64, 48), "red"), 80, "pillow")
    assert original[2:4] == b"\xff\xe0"  # Pillow writes JFIF APP0
    first = jpeg.with_exif(original, jpeg.exif_bytes(device_id="a", captured_at_ms=1))
    second = jpeg.with_exif(
        first,
        jpeg.exif_bytes(device_id="b", captured_at_ms=2, location={"lat": -33.9, "lon": 151.2}),
    )
    assert second[2:4] == b"\xff\xe0" and second.count(b"Exif\x00\x00") == 1
    image = Image.open(io.BytesIO(second))
    exif = image.getexif()
    assert exif[315] == "b" and exif[306] == "1970:01:01 00:00:00"
    gps = exif.get_ifd(0x8825)
    assert gps[1] == "S" and gps[3] == "E" and gps[2][0] == 33.0
    # The image data itself is untouched: everything after the EXIF segment is the original.
    assert second.endswith(original[2 + 2 + 16 :])
    assert image.size == (64, 48)


def test_preview_is_bounded_and_small_images_are_kept():
    big = jpeg.encode(Image.new("RGB", (1600, 1200), "blue"), 85)
    small = jpeg.preview(big, 200)
    assert max(Image.open(io.BytesIO(small)).size) == 200
    assert jpeg.preview(small, 400) is small
