"""Sipeed MaixCAM through MaixPy's ``maix.camera`` (wiki.sipeed.com/maixpy/api/maix/camera).

``maix.camera.Camera(width, height, format, fps=...)`` opens the sensor at one resolution (a new
size re-creates it); ``read()`` returns a ``maix.image.Image`` in RGB888 whose raw bytes are JPEG
encoded here (quality honoured). Mapping: brightness -100..100 -> ``luma`` 0..100; contrast ->
``constrast`` (sic, MaixPy's spelling) 0..100; saturation -> ``saturation`` 0..100;
exposure_us -> ``exposure`` (0 = automatic: ``exp_mode(0)``); analogue_gain -> ``gain`` (x1024
fixed point, automatic at 0); white_balance auto -> ``awb_mode(0)``; hflip -> ``hmirror``;
vflip -> ``vflip``; crop -> ``set_windowing([x, y, w, h])`` (and ``[0, 0, width, height]`` again
when a later capture has no crop: the window stays until reset); warmup_frames ->
``skip_frames``. luma/constrast/saturation are set on every capture, 0 included.
Options: ``fps`` (30 or 60, default 30), ``device`` (default the first camera).
"""

from __future__ import annotations

from typing import Any

from camfleet.edge import jpeg
from camfleet.edge.cameras.base import Camera, CameraError, Capabilities, Capture
from camfleet.edge.cameras.settings import SettingsError
from camfleet.edge.cameras.vendor import require
from camfleet.proto.v1 import common_pb2

INSTALL = "the maix package ships with the MaixCAM system image (MaixPy); it is not on PyPI"
SETTINGS = frozenset(
    {
        "width",
        "height",
        "jpeg_quality",
        "brightness",
        "contrast",
        "saturation",
        "exposure_us",
        "analogue_gain",
        "white_balance",
        "hflip",
        "vflip",
        "warmup_frames",
        "crop_x",
        "crop_y",
        "crop_w",
        "crop_h",
    }
)
DEFAULT_SIZE = (640, 480)


def _percent(value: int) -> int:
    """-100..100 -> 0..100 with 50 neutral."""
    return 50 + value // 2


class MaixCamera(Camera):
    platform = "maix"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.maix: Any = None
        self.cam: Any = None
        self.size: tuple[int, int] | None = None
        self.window: list[int] | None = None  # the sensor window in force (None = whole frame)
        self.fps = int(self.options.get("fps", 30))
        self.encoder = jpeg.available_encoder(str(self.options.get("encoder", "auto")))

    def open(self) -> None:
        self.maix = require("maix", INSTALL)
        self._create(DEFAULT_SIZE)

    def _create(self, size: tuple[int, int]) -> None:
        if self.cam is not None:
            self.cam.close()
        camera, image = self.maix.camera, self.maix.image
        try:
            self.cam = camera.Camera(
                size[0],
                size[1],
                image.Format.FMT_RGB888,
                fps=self.fps,
                **({"device": self.options["device"]} if "device" in self.options else {}),
            )
        except (RuntimeError, ValueError) as exc:
            raise CameraError(f"maix: cannot open camera at {size[0]}x{size[1]}: {exc}") from None
        self.size = size
        self.window = None  # a new Camera starts unwindowed

    def close(self) -> None:
        if self.cam is not None:
            self.cam.close()
            self.cam = None

    def capabilities(self) -> Capabilities:
        return Capabilities(
            platform=self.platform,
            settings=SETTINGS,
            max_width=2560,
            max_height=1440,
            features=frozenset({"jpeg"}),
            info={"camera_backend": "maix"},
        )

    def validate(self, settings: common_pb2.CameraSettings) -> None:
        super().validate(settings)
        if settings.HasField("white_balance") and settings.white_balance not in (
            common_pb2.WHITE_BALANCE_AUTO,
        ):
            raise SettingsError("maix camera supports white_balance auto only")
        if settings.rotation:
            raise SettingsError("maix camera cannot rotate; use hflip/vflip")

    def capture(self, settings: common_pb2.CameraSettings) -> Capture:
        if self.cam is None:
            raise CameraError("maix camera is not open")
        size = (settings.width, settings.height) if settings.HasField("width") else DEFAULT_SIZE
        try:
            if size != self.size:
                self._create(size)
            cam = self.cam
            cam.hmirror(int(settings.hflip))
            cam.vflip(int(settings.vflip))
            cam.luma(_percent(settings.brightness))
            cam.constrast(_percent(settings.contrast))
            cam.saturation(_percent(settings.saturation))
            if settings.exposure_us:
                cam.exp_mode(1)
                cam.exposure(settings.exposure_us)
            else:
                cam.exp_mode(0)
            if settings.analogue_gain:
                cam.gain(int(settings.analogue_gain * 1024))
            cam.awb_mode(0)
            w, h = size
            if settings.HasField("crop_w"):
                window = [
                    int(settings.crop_x * w),
                    int(settings.crop_y * h),
                    int(settings.crop_w * w),
                    int(settings.crop_h * h),
                ]
            else:
                window = None
            if window != self.window:
                # the sensor keeps its window until told otherwise: a capture without a crop
                # after one with a crop must set the whole frame back
                cam.set_windowing(window if window is not None else [0, 0, w, h])
                self.window = window
            if settings.warmup_frames:
                cam.skip_frames(settings.warmup_frames)
            img = cam.read()
        except (RuntimeError, ValueError) as exc:
            raise CameraError(f"maix: {exc}") from None
        width, height = img.width(), img.height()
        pixels = _pixels(bytes(img.to_bytes()), width, height)
        quality = settings.jpeg_quality if settings.HasField("jpeg_quality") else 85
        data = jpeg.encode(pixels, quality, self.encoder)
        used = common_pb2.CameraSettings()
        used.CopyFrom(settings)
        used.width, used.height, used.jpeg_quality = width, height, quality
        return Capture(data, width, height, used, {"exposure_us": str(cam.exposure())})


def _pixels(raw: bytes, width: int, height: int) -> Any:
    """RGB888 bytes as a numpy array (no copy) when numpy is there, else as a PIL image."""
    try:
        import numpy as np
    except ImportError:
        from PIL import Image

        return Image.frombytes("RGB", (width, height), raw)
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
