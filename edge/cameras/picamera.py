"""Raspberry Pi cameras through the legacy ``picamera`` library (MMAL stack, Buster and older).

Mapping: width/height -> ``resolution``; rotation -> ``rotation``; hflip/vflip; brightness
-100..100 -> ``brightness`` 0..100 (50 neutral); contrast/saturation/sharpness -100..100 as is;
iso (0 = auto); exposure_us -> ``shutter_speed`` (0 = auto); white_balance -> ``awb_mode``;
effect -> ``image_effect`` / ``color_effects``; crop -> ``zoom``; jpeg_quality -> capture's
``quality``. Backend extras ``exposure_mode``, ``meter_mode``, ``awb_mode`` and ``image_effect``
pass through by name. ``PiCameraError`` and its family become CameraError (the message kept);
``PiCameraValueError`` from a setting becomes SettingsError (a rejected ack).
Options: ``camera_num`` (default 0), ``thumbnail`` ([w, h, quality] or none), ``settle_s``
(default 2.0).

Exposure settles after the camera opens: without a preview running, the first frames are dark
while the gains climb, which is why the picamera documentation's recipes wait 2 s after opening.
The backend waits what is left of ``settle_s`` since the camera opened before its first capture
(none when a preview runs).

Works with picamera 1.13 and with the early API, chosen by what the library offers: ``PiCamera``
with or without ``camera_num``, ``iso`` or ``ISO``, ``zoom`` or ``crop``, exceptions in
``picamera.exc`` or in ``picamera`` itself; ``color_effects`` (the grayscale, sepia and tint
effects) and ``exif_tags`` only where they exist.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import time
from typing import Any

from camfleet.edge.cameras.base import Camera, CameraError, Capabilities, Capture
from camfleet.edge.cameras.settings import SettingsError
from camfleet.edge.cameras.vendor import require
from camfleet.proto.v1 import common_pb2

INSTALL = "pip install 'camfleet[pi-legacy]' (legacy camera stack only)"
AWB = {
    common_pb2.WHITE_BALANCE_AUTO: "auto",
    common_pb2.WHITE_BALANCE_SUNNY: "sunlight",
    common_pb2.WHITE_BALANCE_CLOUDY: "cloudy",
    common_pb2.WHITE_BALANCE_OFFICE: "fluorescent",
    common_pb2.WHITE_BALANCE_HOME: "incandescent",
}
# effect -> (image_effect, color_effects)
EFFECTS: dict[int, tuple[str, tuple[int, int] | None]] = {
    common_pb2.EFFECT_NONE: ("none", None),
    common_pb2.EFFECT_NEGATIVE: ("negative", None),
    common_pb2.EFFECT_GRAYSCALE: ("none", (128, 128)),
    common_pb2.EFFECT_SEPIA: ("none", (100, 150)),
    common_pb2.EFFECT_RED_TINT: ("none", (90, 240)),
    common_pb2.EFFECT_GREEN_TINT: ("none", (60, 60)),
    common_pb2.EFFECT_BLUE_TINT: ("none", (240, 90)),
}
PASS_THROUGH = ("exposure_mode", "meter_mode", "awb_mode", "image_effect")
SETTINGS = frozenset(
    {
        "width",
        "height",
        "jpeg_quality",
        "rotation",
        "hflip",
        "vflip",
        "brightness",
        "contrast",
        "saturation",
        "sharpness",
        "iso",
        "exposure_us",
        "white_balance",
        "effect",
        "crop_x",
        "crop_y",
        "crop_w",
        "crop_h",
    }
)


class PiCameraCamera(Camera):
    platform = "picamera"
    clock = staticmethod(time.monotonic)  # tests replace both with a simulated clock
    sleep = staticmethod(time.sleep)

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.cam: Any = None
        self.module: Any = None
        self.errors: Any = None  # picamera.exc, or picamera itself in the early API
        self._stack = contextlib.ExitStack()
        self.settle_s = float(self.options.get("settle_s", 2.0))
        self._opened_at: float | None = None
        self._settled = False

    def open(self) -> None:
        self.module = require("picamera", INSTALL)
        self.errors = getattr(self.module, "exc", self.module)
        camera_num = int(self.options.get("camera_num", 0))
        kwargs = {}
        if "camera_num" in inspect.signature(self.module.PiCamera).parameters:
            kwargs["camera_num"] = camera_num
        elif camera_num:
            raise CameraError("picamera: this picamera release drives one camera (no camera_num)")
        try:
            # PiCamera is a context manager: the stack closes it even if open fails half way.
            self.cam = self._stack.enter_context(self.module.PiCamera(**kwargs))
        except self.errors.PiCameraError as exc:
            raise CameraError(f"picamera: cannot open camera: {exc}") from None
        self._opened_at = self.clock()
        self._settled = False

    def close(self) -> None:
        self._stack.close()
        self.cam = None

    def _settle(self) -> None:
        """Before the first capture: the rest of ``settle_s`` since open, unless a preview runs
        (it has been exposing frames all along)."""
        if self._settled or self._opened_at is None:
            return
        if getattr(self.cam, "preview", None) is None:
            left = self.settle_s - (self.clock() - self._opened_at)
            if left > 0:
                self.sleep(left)
        self._settled = True

    def capabilities(self) -> Capabilities:
        return Capabilities(
            platform=self.platform,
            settings=SETTINGS,
            max_width=4056,
            max_height=3040,
            features=frozenset({"jpeg"}),
            info={"camera_backend": "picamera"},
        )

    def _apply(self, s: common_pb2.CameraSettings) -> None:
        cam = self.cam
        if s.HasField("width"):
            cam.resolution = (s.width, s.height)
        cam.rotation = s.rotation
        cam.hflip = s.hflip
        cam.vflip = s.vflip
        cam.brightness = 50 + s.brightness // 2
        cam.contrast = s.contrast
        cam.saturation = s.saturation
        cam.sharpness = s.sharpness
        setattr(cam, "iso" if hasattr(cam, "iso") else "ISO", s.iso)
        cam.shutter_speed = s.exposure_us
        cam.awb_mode = AWB.get(s.white_balance, "auto")
        image_effect, color_effects = EFFECTS.get(s.effect, ("none", None))
        cam.image_effect = image_effect
        if hasattr(cam, "color_effects"):
            cam.color_effects = color_effects
        elif color_effects is not None:
            raise SettingsError("picamera: this release has no color_effects for that effect")
        roi = (
            (s.crop_x, s.crop_y, s.crop_w, s.crop_h)
            if s.HasField("crop_w")
            else (0.0, 0.0, 1.0, 1.0)
        )
        setattr(cam, "zoom" if hasattr(cam, "zoom") else "crop", roi)
        for key in PASS_THROUGH:
            if key in s.backend:
                setattr(cam, key, s.backend[key])

    def capture(self, settings: common_pb2.CameraSettings) -> Capture:
        if self.cam is None:
            raise CameraError("picamera camera is not open")
        exc_mod = self.errors
        quality = settings.jpeg_quality if settings.HasField("jpeg_quality") else 85
        try:
            self._apply(settings)
        except exc_mod.PiCameraValueError as exc:
            raise SettingsError(f"picamera: {exc}") from None
        except exc_mod.PiCameraError as exc:
            raise CameraError(f"picamera: {exc}") from None
        thumb = self.options.get("thumbnail")
        stream = io.BytesIO()
        self._settle()
        try:
            if hasattr(self.cam, "exif_tags"):
                self.cam.exif_tags["IFD0.Software"] = "camfleet"
            self.cam.capture(
                stream, "jpeg", quality=quality, thumbnail=tuple(thumb) if thumb else None
            )
        except exc_mod.PiCameraError as exc:
            raise CameraError(f"picamera: capture failed: {exc}") from None
        width, height = (int(v) for v in self.cam.resolution)
        if settings.rotation in (90, 270):
            width, height = height, width  # the sensor output is rotated
        used = common_pb2.CameraSettings()
        used.CopyFrom(settings)
        used.width, used.height, used.jpeg_quality = width, height, quality
        meta = {"awb_mode": str(self.cam.awb_mode)}
        if hasattr(self.cam, "exposure_speed"):
            meta["exposure_speed_us"] = str(self.cam.exposure_speed)
        return Capture(stream.getvalue(), width, height, used, meta)
