"""Real JPEG pictures for simulated devices: what a person (or Pillow, or a browser) can open,
unlike the JPEG-shaped random bytes the protocol tests use."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def picture_jpeg(seed: int, size: tuple[int, int] = (320, 240), label: str = "") -> bytes:
    """A small JPEG whose colours and text depend on ``seed`` (each frame looks different)."""
    r, g, b = (seed * 67) % 256, (seed * 131 + 80) % 256, (seed * 29 + 160) % 256
    image = Image.new("RGB", size, (r, g, b))
    draw = ImageDraw.Draw(image)
    w, h = size
    x = (seed * 23) % max(w - 40, 1)
    draw.ellipse((x, h // 3, x + 40, h // 3 + 40), fill=(255 - r, 255 - g, 255 - b))
    draw.text((8, 8), label or f"frame {seed}", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()
