"""Conformance fake of the legacy picamera 1.13 library (picamera.readthedocs.io, API: The
PiCamera Class, Exceptions). Attribute setters validate as documented and raise
PiCameraValueError; a closed camera raises PiCameraClosed; PiCamera is a context manager;
``capture(output, format, use_video_port, resize, splitter_port, bayer, **options)`` writes a
real JPEG (quality 1..100, thumbnail). ``PiCamera.calls`` records attribute sets and calls.
``PiCamera.fail_next_capture`` makes the next capture raise PiCameraRuntimeError (a timeout, as
the real camera does when the ribbon is loose). A capture within 2 s of opening without a
preview running comes out dark (the gains have not settled; the documentation's recipes wait
2 s); ``PiCamera.clock`` is the time source (tests replace it). The early API (``PiCamera()``,
``ISO``, ``crop``) has its own fake in tests/fakes/era2022/picamera."""

from __future__ import annotations

import time
from typing import Any

from PIL import Image

from . import exc
from .exc import PiCameraClosed, PiCameraError, PiCameraValueError

__all__ = ["PiCamera", "PiCameraError", "PiCameraValueError", "exc"]

AWB_MODES = {
    "off": 0,
    "auto": 1,
    "sunlight": 2,
    "cloudy": 3,
    "shade": 4,
    "tungsten": 5,
    "fluorescent": 6,
    "incandescent": 7,
    "flash": 8,
    "horizon": 9,
}
EXPOSURE_MODES = {
    "off",
    "auto",
    "night",
    "nightpreview",
    "backlight",
    "spotlight",
    "sports",
    "snow",
    "beach",
    "verylong",
    "fixedfps",
    "antishake",
    "fireworks",
}
METER_MODES = {"average", "spot", "backlit", "matrix"}
IMAGE_EFFECTS = {
    "none",
    "negative",
    "solarize",
    "sketch",
    "denoise",
    "emboss",
    "oilpaint",
    "hatch",
    "gpen",
    "pastel",
    "watercolor",
    "film",
    "blur",
    "saturation",
    "colorswap",
    "washedout",
    "posterise",
    "colorpoint",
    "colorbalance",
    "cartoon",
    "deinterlace1",
    "deinterlace2",
}
MAX_RESOLUTION = (4056, 3040)


def _range(name: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or not low <= value <= high:
        raise PiCameraValueError(f"Invalid {name} value: {value} (valid range {low}..{high})")
    return value


class PiCamera:
    calls: list[tuple[Any, ...]] = []
    fail_next_capture = False
    clock = staticmethod(time.monotonic)

    def __init__(
        self,
        camera_num: int = 0,
        stereo_mode: str = "none",
        stereo_decimate: bool = False,
        resolution: Any = None,
        framerate: Any = None,
        sensor_mode: int = 0,
        led_pin: Any = None,
        clock_mode: str = "reset",
        framerate_range: Any = None,
    ) -> None:
        if camera_num != 0:
            raise PiCameraError("Camera is not enabled. Try running 'sudo raspi-config'")
        object.__setattr__(self, "_closed", False)
        object.__setattr__(self, "_opened_at", PiCamera.clock())
        object.__setattr__(
            self,
            "_values",
            {
                "resolution": tuple(resolution or (1280, 720)),
                "rotation": 0,
                "hflip": False,
                "vflip": False,
                "brightness": 50,
                "contrast": 0,
                "saturation": 0,
                "sharpness": 0,
                "iso": 0,
                "shutter_speed": 0,
                "awb_mode": "auto",
                "exposure_mode": "auto",
                "meter_mode": "average",
                "image_effect": "none",
                "color_effects": None,
                "zoom": (0.0, 0.0, 1.0, 1.0),
            },
        )
        object.__setattr__(
            self, "exif_tags", {"IFD0.Model": "RP_imx477", "IFD0.Make": "RaspberryPi"}
        )
        PiCamera.calls.append(("__init__", camera_num))

    def __enter__(self) -> PiCamera:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        object.__setattr__(self, "_closed", True)
        PiCamera.calls.append(("close",))

    @property
    def closed(self) -> bool:
        return bool(object.__getattribute__(self, "_closed"))

    def _check_open(self) -> None:
        if object.__getattribute__(self, "_closed"):
            raise PiCameraClosed("Camera is closed")

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            self._check_open()
            return values[name]
        if name == "exposure_speed":
            return values["shutter_speed"] or 33000
        if name == "preview":
            return None  # no preview is ever started by camfleet
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._check_open()
        values = object.__getattribute__(self, "_values")
        if name not in values:
            raise AttributeError(f"PiCamera has no attribute {name!r}")
        values[name] = self._validate(name, value)
        PiCamera.calls.append(("set", name, values[name]))

    @staticmethod
    def _validate(name: str, value: Any) -> Any:
        if name == "resolution":
            w, h = value
            if not (0 < w <= MAX_RESOLUTION[0] and 0 < h <= MAX_RESOLUTION[1]):
                raise PiCameraValueError(f"Invalid resolution {w}x{h}")
            return (int(w), int(h))
        if name == "rotation":
            return (int(value) % 360) // 90 * 90  # documented: rounded down to a multiple of 90
        if name in ("hflip", "vflip"):
            return bool(value)
        if name == "brightness":
            return _range(name, value, 0, 100)
        if name in ("contrast", "saturation", "sharpness"):
            return _range(name, value, -100, 100)
        if name == "iso":
            return _range(name, value, 0, 1600)
        if name == "shutter_speed":
            return _range(name, value, 0, 200_000_000)
        if name == "awb_mode" and value not in AWB_MODES:
            raise PiCameraValueError(f"Invalid auto-white-balance mode: {value}")
        if name == "exposure_mode" and value not in EXPOSURE_MODES:
            raise PiCameraValueError(f"Invalid exposure mode: {value}")
        if name == "meter_mode" and value not in METER_MODES:
            raise PiCameraValueError(f"Invalid metering mode: {value}")
        if name == "image_effect" and value not in IMAGE_EFFECTS:
            raise PiCameraValueError(f"Invalid image effect: {value}")
        if name == "color_effects" and value is not None:
            u, v = value
            if not (0 <= u <= 255 and 0 <= v <= 255):
                raise PiCameraValueError("Invalid color effect (u, v) values")
        if name == "zoom":
            if len(value) != 4 or any(not 0.0 <= float(x) <= 1.0 for x in value):
                raise PiCameraValueError("Invalid zoom rectangle")
            return tuple(float(x) for x in value)
        return value

    def capture(
        self,
        output: Any,
        format: str | None = None,
        use_video_port: bool = False,
        resize: Any = None,
        splitter_port: int = 0,
        bayer: bool = False,
        **options: Any,
    ) -> None:
        self._check_open()
        if PiCamera.fail_next_capture:
            PiCamera.fail_next_capture = False
            raise exc.PiCameraRuntimeError("Timed out waiting for capture to end")
        if format not in ("jpeg", None):
            raise PiCameraValueError(f"Invalid format {format}")
        quality = options.get("quality", 85)
        if not 1 <= quality <= 100:
            raise PiCameraValueError(f"Invalid quality {quality}")
        thumbnail = options.get("thumbnail", (64, 48, 35))
        values = object.__getattribute__(self, "_values")
        size = resize or values["resolution"]
        if values["rotation"] in (90, 270):
            size = (size[1], size[0])
        open_for = PiCamera.clock() - object.__getattribute__(self, "_opened_at")
        level = values["brightness"] * 2 if open_for >= 2.0 else 8  # unsettled: a dark frame
        image = Image.new("RGB", size, (level, 80, 60))
        image.save(output, "JPEG", quality=quality)
        PiCamera.calls.append(("capture", format, quality, thumbnail, round(open_for, 3)))
