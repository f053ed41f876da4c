"""Raspberry Pi cameras through the legacy ``picamera`` library (MMAL stack, Buster and older).

Mapping: width/height -> ``resolution``; rotation -> ``rotation``; hflip/vflip; brightness
-100..100 -> ``brightness`` 0..100 (50 neutral); contrast/saturation/sharpness -100..100 as is;
iso (0 = auto); exposure_us -> ``shutter_speed`` (0 = auto); white_balance -> ``awb_mode``;
effect -> ``image_effect`` / ``color_effects``; crop -> ``zoom``; jpeg_quality -> capture's
``quality``. Backend extras ``exposure_mode``, ``meter_mode``, ``awb_mode`` and ``image_effect``
pass through by name. ``PiCameraError`` and its family become CameraError (the message kept);
``PiCameraValueError`` from a setting becomes SettingsError (a rejected ack).
Options: ``camera_num`` (default 0), ``thumbnail`` ([w, h, quality] or none).
"""

from __future__ import annotations

import contextlib
import io
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

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.cam: Any = None
        self.module: Any = None
        self._stack = contextlib.ExitStack()

    def open(self) -> None:
        self.module = require("picamera", INSTALL)
        try:
            # PiCamera is a context manager: the stack closes it even if open fails half way.
            self.cam = self._stack.enter_context(
                self.module.PiCamera(camera_num=int(self.options.get("camera_num", 0)))
            )
        except self.module.exc.PiCameraError as exc:
            raise CameraError(f"picamera: cannot open camera: {exc}") from None

    def close(self) -> None:
        self._stack.close()
        self.cam = None

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
        cam.iso = s.iso
        cam.shutter_speed = s.exposure_us
        cam.awb_mode = AWB.get(s.white_balance, "auto")
        image_effect, color_effects = EFFECTS.get(s.effect, ("none", None))
        cam.image_effect = image_effect
        cam.color_effects = color_effects
        cam.zoom = (
            (s.crop_x, s.crop_y, s.crop_w, s.crop_h)
            if s.HasField("crop_w")
            else (0.0, 0.0, 1.0, 1.0)
        )
        for key in PASS_THROUGH:
            if key in s.backend:
                setattr(cam, key, s.backend[key])

    def capture(self, settings: common_pb2.CameraSettings) -> Capture:
        if self.cam is None:
            raise CameraError("picamera camera is not open")
        exc_mod = self.module.exc
        quality = settings.jpeg_quality if settings.HasField("jpeg_quality") else 85
        try:
            self._apply(settings)
        except exc_mod.PiCameraValueError as exc:
            raise SettingsError(f"picamera: {exc}") from None
        except exc_mod.PiCameraError as exc:
            raise CameraError(f"picamera: {exc}") from None
        thumb = self.options.get("thumbnail")
        stream = io.BytesIO()
        try:
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
        meta = {
            "exposure_speed_us": str(self.cam.exposure_speed),
            "awb_mode": str(self.cam.awb_mode),
        }
        return Capture(stream.getvalue(), width, height, used, meta)
