"""USB webcams (and V4L2 devices, video files) through OpenCV's VideoCapture.

Options: ``device`` (index like 0, or a path such as /dev/video2 or a video file; default 0),
``fps`` (requested frame rate), ``warmup_frames`` default. Resolution is requested with
CAP_PROP_FRAME_WIDTH/HEIGHT; the frame's real size is what is reported (webcams round to a mode
they support). Image settings the device cannot apply are applied in software.
"""

from __future__ import annotations

from typing import Any

from camfleet.edge import jpeg
from camfleet.edge.cameras.base import Camera, CameraError, Capabilities, Capture
from camfleet.edge.cameras.software import SOFTWARE_SETTINGS, apply_settings, needs_processing
from camfleet.edge.cameras.vendor import require
from camfleet.proto.v1 import common_pb2

INSTALL = "pip install 'camfleet[webcam]' (opencv-python-headless)"


class OpenCVCamera(Camera):
    platform = "opencv"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        device = self.options.get("device", 0)
        self.device = int(device) if isinstance(device, str) and device.isdigit() else device
        self.encoder = jpeg.available_encoder(str(self.options.get("encoder", "auto")))
        self.cap: Any = None
        self.cv2: Any = None
        self.size: tuple[int, int] | None = None

    def open(self) -> None:
        self.cv2 = require("cv2", INSTALL)
        cap = self.cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"opencv: cannot open video device {self.device!r}")
        if "fps" in self.options:
            cap.set(self.cv2.CAP_PROP_FPS, float(self.options["fps"]))
        self.cap = cap

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def capabilities(self) -> Capabilities:
        return Capabilities(
            platform=self.platform,
            settings=SOFTWARE_SETTINGS | {"width", "height", "jpeg_quality", "warmup_frames"},
            features=frozenset({"jpeg"}),
            info={"camera_backend": "opencv", "device": str(self.device)},
        )

    def capture(self, settings: common_pb2.CameraSettings) -> Capture:
        if self.cap is None:
            raise CameraError("opencv camera is not open")
        cv2 = self.cv2
        if settings.HasField("width") and self.size != (settings.width, settings.height):
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
            self.size = (settings.width, settings.height)
        for _ in range(settings.warmup_frames):
            self.cap.grab()
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            raise CameraError(f"opencv: no frame from {self.device!r} (unplugged or end of file)")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        quality = settings.jpeg_quality if settings.HasField("jpeg_quality") else 85
        height, width = rgb.shape[:2]
        if needs_processing(settings):
            from PIL import Image

            image = apply_settings(Image.fromarray(rgb), settings)
            width, height = image.size
            data = jpeg.encode(image, quality, self.encoder)
        else:
            data = jpeg.encode(rgb, quality, self.encoder)
        used = common_pb2.CameraSettings()
        used.CopyFrom(settings)
        used.ClearField("backend")
        used.width, used.height, used.jpeg_quality = width, height, quality
        return Capture(data, width, height, used, {})
