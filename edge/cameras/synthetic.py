"""A camera drawn with Pillow: device name, a clock and moving shapes, deterministic by seed.

The default backend for demos and tests: frame ``n`` of seed ``s`` at capture time ``t`` is
always the same image, so tests can compare bytes. Options: ``seed`` (int, default 0),
``label`` (text drawn, default the device id), ``clock`` (draw the capture time, default true).
Applies width/height, jpeg_quality, brightness/contrast/saturation/sharpness, hflip/vflip,
rotation, effect and crop, so the whole settings path is exercised without hardware.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from camfleet.edge import jpeg
from camfleet.edge.cameras.base import Camera, CameraError, Capabilities, Capture
from camfleet.edge.cameras.software import SOFTWARE_SETTINGS, apply_settings
from camfleet.proto.v1 import common_pb2

DEFAULT_SIZE = (640, 480)
DEFAULT_QUALITY = 85
_SETTINGS = frozenset({"width", "height", "jpeg_quality"}) | SOFTWARE_SETTINGS


class SyntheticCamera(Camera):
    platform = "synthetic"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        seed = self.options.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise CameraError(f"synthetic camera option seed must be an integer, got {seed!r}")
        self.seed = seed
        self.label = str(self.options.get("label", "synthetic"))
        self.draw_clock = bool(self.options.get("clock", True))
        self.encoder = jpeg.available_encoder(str(self.options.get("encoder", "auto")))
        self.frame_index = 0
        self._opened = False
        self._backgrounds: dict[tuple[int, int], Image.Image] = {}
        self._fonts: dict[int, Any] = {}

    def open(self) -> None:
        self._opened = True

    def close(self) -> None:
        self._opened = False

    def capabilities(self) -> Capabilities:
        return Capabilities(
            platform=self.platform,
            settings=_SETTINGS,
            max_width=4096,
            max_height=4096,
            features=frozenset({"jpeg", "deterministic"}),
            info={"camera_backend": "synthetic", "seed": str(self.seed)},
        )

    def capture(self, settings: common_pb2.CameraSettings) -> Capture:
        if not self._opened:
            raise CameraError("synthetic camera is not open")
        self.validate(settings)
        self.frame_index += 1
        size = (settings.width, settings.height) if settings.HasField("width") else DEFAULT_SIZE
        quality = settings.jpeg_quality if settings.HasField("jpeg_quality") else DEFAULT_QUALITY
        image = self.render(size, self.frame_index, time.time())
        image = apply_settings(image, settings)
        used = common_pb2.CameraSettings()
        used.CopyFrom(settings)
        used.width, used.height = image.size
        used.jpeg_quality = quality
        used.ClearField("backend")
        data = jpeg.encode(image, quality, self.encoder)
        metadata = {"synthetic_frame": str(self.frame_index), "seed": str(self.seed)}
        return Capture(data, image.size[0], image.size[1], used, metadata)

    def render(self, size: tuple[int, int], index: int, now: float) -> Image.Image:
        """Frame ``index`` of this seed: background, moving shapes, label and clock."""
        width, height = size
        image = self._background(size).copy()
        draw = ImageDraw.Draw(image)
        rng = random.Random(self.seed * 1_000_003 + index)
        for k in range(3):
            radius = max(4, min(width, height) // (6 + 2 * k))
            x = (index * (7 + 5 * k) + k * width // 3) % (width + 2 * radius) - radius
            y = height // 2 + int((height // 3) * ((k - 1) * 0.8))
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
        font = self._font(max(10, height // 20))
        draw.text((10, 10), f"{self.label}  #{index}", fill=(255, 255, 255), font=font)
        if self.draw_clock:
            stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
            draw.text((10, height - 10 - height // 20), stamp, fill=(255, 255, 0), font=font)
        return image

    def _background(self, size: tuple[int, int]) -> Image.Image:
        cached = self._backgrounds.get(size)
        if cached is None:
            # A seed-coloured diagonal gradient, computed once per size.
            rng = random.Random(self.seed)
            base = (rng.randrange(40, 120), rng.randrange(40, 120), rng.randrange(40, 120))
            ramp = Image.linear_gradient("L").resize(size)
            cached = Image.merge(
                "RGB", [ramp.point(lambda v, b=b: min(255, b + v // 3)) for b in base]
            )
            self._backgrounds = {size: cached}  # keep one size: bounded memory
        return cached

    def _font(self, px: int) -> Any:
        font = self._fonts.get(px)
        if font is None:
            try:
                font = ImageFont.load_default(size=px)
            except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
                font = ImageFont.load_default()
            self._fonts[px] = font
        return font
