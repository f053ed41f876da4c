"""maix.camera: Camera(width, height, format, device, fps, buff_num, open)."""

from __future__ import annotations

from typing import Any

from .image import Format, Image

calls: list[tuple[Any, ...]] = []
SENSOR = (2560, 1440)


def list_devices() -> list[str]:
    return ["/dev/video0"]


def get_device_name() -> str:
    return "gc4653"


class Camera:
    def __init__(
        self,
        width: int = -1,
        height: int = -1,
        format: Format = Format.FMT_RGB888,
        device: str | None = None,
        fps: int = -1,
        buff_num: int = 3,
        open: bool = True,
    ) -> None:
        w, h = (640 if width == -1 else width), (480 if height == -1 else height)
        if fps not in (-1, 30, 60):
            raise ValueError(f"fps {fps} not supported (30 or 60)")
        if not (0 < w <= SENSOR[0] and 0 < h <= SENSOR[1]):
            raise ValueError(f"resolution {w}x{h} exceeds the sensor")
        if fps == 60 and (w > 1280 or h > 720):
            raise ValueError("60 fps supports up to 1280x720")
        if format not in (Format.FMT_RGB888, Format.FMT_BGR888, Format.FMT_GRAYSCALE):
            raise ValueError(f"format {format} not supported")
        self._w, self._h, self._format = w, h, format
        self._open = open
        self._values = {
            "exposure": 10000,
            "gain": 1024,
            "luma": 50,
            "constrast": 50,
            "saturation": 50,
            "awb_mode": 0,
            "hmirror": 0,
            "vflip": 0,
            "exp_mode": 0,
        }
        self._window: list[int] | None = None
        calls.append(("Camera", w, h, int(format), fps))

    def _get_set(self, name: str, value: int, low: int, high: int) -> int:
        if value != -1:
            if not self._open:
                raise RuntimeError("camera is closed")
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} value {value} out of range {low}..{high}")
            self._values[name] = value
            calls.append((name, value))
        return self._values[name]

    def exposure(self, value: int = -1) -> int:
        return self._get_set("exposure", value, 1, 1_000_000)

    def gain(self, value: int = -1) -> int:
        return self._get_set("gain", value, 1024, 1024 * 64)

    def luma(self, value: int = -1) -> int:
        return self._get_set("luma", value, 0, 100)

    def constrast(self, value: int = -1) -> int:  # sic: MaixPy's spelling
        return self._get_set("constrast", value, 0, 100)

    def saturation(self, value: int = -1) -> int:
        return self._get_set("saturation", value, 0, 100)

    def awb_mode(self, value: int = -1) -> int:
        return self._get_set("awb_mode", value, 0, 1)

    def exp_mode(self, value: int = -1) -> int:
        return self._get_set("exp_mode", value, 0, 1)

    def hmirror(self, value: int = -1) -> int:
        return self._get_set("hmirror", value, 0, 1)

    def vflip(self, value: int = -1) -> int:
        return self._get_set("vflip", value, 0, 1)

    def set_windowing(self, roi: list[int]) -> None:
        x, y, w, h = roi
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > self._w or y + h > self._h:
            raise ValueError(f"windowing {roi} outside {self._w}x{self._h}")
        self._window = list(roi)
        calls.append(("set_windowing", list(roi)))

    def skip_frames(self, num: int) -> None:
        calls.append(("skip_frames", num))

    def width(self) -> int:
        return self._w

    def height(self) -> int:
        return self._h

    def is_opened(self) -> bool:
        return self._open

    def read(self) -> Image:
        if not self._open:
            raise RuntimeError("camera is closed")
        calls.append(("read",))
        level = self._values["luma"] * 2
        pixel = bytes((level, 100, 30))
        return Image(self._w, self._h, self._format, pixel * (self._w * self._h))

    def close(self) -> None:
        self._open = False
        calls.append(("close",))
