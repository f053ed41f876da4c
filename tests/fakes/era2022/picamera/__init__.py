"""Fake of the early picamera API, as its first documentation describes it.

What differs from picamera 1.13 (tests/fakes/picamera), and the backend must cope with:
- ``PiCamera()`` takes no arguments (one camera);
- the sensitivity is ``ISO`` (1.13: ``iso``) and the region of interest ``crop`` (1.13:
  ``zoom``);
- the exceptions live in the ``picamera`` namespace (there is no ``picamera.exc``);
- no ``exif_tags``, no ``color_effects``, no ``exposure_speed``.
Like the real camera, a capture taken right after opening without a preview running comes out
dark: the gains have not settled (the documentation's recipes wait 2 s). The fake records how
long the camera had been open at each capture in ``PiCamera.calls``; ``PiCamera.clock`` is
the time source (tests replace it).
"""

from __future__ import annotations

import time
from typing import Any

from PIL import Image


class PiCameraError(Exception):
    pass


class PiCameraValueError(PiCameraError, ValueError):
    pass


class PiCameraRuntimeError(PiCameraError, RuntimeError):
    pass


AWB_MODES = ("off", "auto", "sunlight", "cloudy", "shade", "tungsten", "fluorescent",
             "incandescent", "flash", "horizon")  # fmt: skip
IMAGE_EFFECTS = (
    "none", "negative", "solarize", "sketch", "denoise", "emboss", "oilpaint", "hatch", "gpen",
    "pastel", "watercolor", "film", "blur", "saturation", "colorswap", "washedout", "posterise",
    "colorpoint", "colorbalance", "cartoon",
)  # fmt: skip
RANGES = {
    "brightness": (0, 100),
    "contrast": (-100, 100),
    "saturation": (-100, 100),
    "sharpness": (-100, 100),
    "ISO": (0, 800),
    "shutter_speed": (0, 6_000_000),
}


class PiCamera:
    calls: list[tuple[Any, ...]] = []
    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        values = {
            "resolution": (1280, 720),
            "rotation": 0,
            "hflip": False,
            "vflip": False,
            "brightness": 50,
            "contrast": 0,
            "saturation": 0,
            "sharpness": 0,
            "ISO": 0,
            "shutter_speed": 0,
            "awb_mode": "auto",
            "exposure_mode": "auto",
            "meter_mode": "average",
            "image_effect": "none",
            "crop": (0.0, 0.0, 1.0, 1.0),
            "preview": None,
        }
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_closed", False)
        object.__setattr__(self, "_opened_at", PiCamera.clock())
        PiCamera.calls.append(("__init__",))

    def __enter__(self) -> PiCamera:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        object.__setattr__(self, "_closed", True)
        PiCamera.calls.append(("close",))

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if object.__getattribute__(self, "_closed"):
            raise PiCameraRuntimeError("Camera is closed")
        values = object.__getattribute__(self, "_values")
        if name not in values or name == "preview":
            raise AttributeError(f"PiCamera has no attribute {name!r}")
        if name in RANGES:
            low, high = RANGES[name]
            if not isinstance(value, int) or not low <= value <= high:
                raise PiCameraValueError(f"Invalid {name} value: {value}")
        elif name == "resolution":
            value = (int(value[0]), int(value[1]))
        elif name == "rotation":
            value = (int(value) % 360) // 90 * 90
        elif name == "awb_mode" and value not in AWB_MODES:
            raise PiCameraValueError(f"Invalid auto-white-balance mode: {value}")
        elif name == "image_effect" and value not in IMAGE_EFFECTS:
            raise PiCameraValueError(f"Invalid image effect: {value}")
        elif name == "crop":
            if len(value) != 4 or any(not 0.0 <= float(x) <= 1.0 for x in value):
                raise PiCameraValueError("Invalid crop rectangle")
            value = tuple(float(x) for x in value)
        values[name] = value
        PiCamera.calls.append(("set", name, value))

    def capture(self, output: Any, format: str | None = None, **options: Any) -> None:
        if object.__getattribute__(self, "_closed"):
            raise PiCameraRuntimeError("Camera is closed")
        quality = options.get("quality", 85)
        if not 1 <= quality <= 100:
            raise PiCameraValueError(f"Invalid quality {quality}")
        values = object.__getattribute__(self, "_values")
        open_for = PiCamera.clock() - object.__getattribute__(self, "_opened_at")
        settled = open_for >= 2.0 or values["preview"] is not None
        size = values["resolution"]
        if values["rotation"] in (90, 270):
            size = (size[1], size[0])
        level = values["brightness"] * 2 if settled else 8  # unsettled gains: a dark frame
        Image.new("RGB", size, (level, 80, 60)).save(output, "JPEG", quality=quality)
        PiCamera.calls.append(("capture", format, quality, round(open_for, 3)))
