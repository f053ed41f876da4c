"""Raspberry Pi cameras through picamera2 (libcamera stack, Raspberry Pi OS Bullseye and later).

Mapping of neutral settings (docs/edge.md has the table):
width/height -> ``main`` stream size of a still configuration; hflip/vflip and rotation 180 ->
``libcamera.Transform``; exposure_us -> AeEnable/ExposureTime; analogue_gain -> AnalogueGain;
white_balance -> AwbEnable/AwbMode; brightness -100..100 -> Brightness -1..1; contrast,
saturation, sharpness -100..100 -> 0..2 around the neutral 1; crop -> ScalerCrop in sensor
pixels; jpeg_quality -> ``options["quality"]``. Values are checked against the ranges the camera
advertises in ``camera_controls`` before they are set. Frames carry ExposureTime, AnalogueGain,
ColourTemperature and Lux from the request metadata. Options: ``camera_num`` (default 0),
``buffer_count``. Only the ``main`` stream is configured (a ``lores`` stream nothing reads
would only cost ISP time and memory).

Works with the 2022 preview release and with today's, chosen by what the object offers, never
by version: controls from ``camera_controls`` or ``list_controls()`` (libcamera ControlId ->
ControlInfo objects); the sensor size from ``camera_properties`` or ``sensor_resolution``;
configurations from ``create_still_configuration`` or the ``still_configuration()`` method; the
event loop started with ``start_preview()`` (a NULL preview) once, before the first start, since
the 2022 release runs none of its own (today's ``start()`` would start the same one); JPEG from
``request.save(name, file, format="jpeg")`` when ``save`` takes a format, else from
``make_image`` through Pillow (the 2022 ``save(name, filename)`` takes the format from the file
name); ``close()`` or ``close_camera()``.
"""

from __future__ import annotations

import inspect
import io
from typing import Any

from camfleet.edge.cameras.base import Camera, CameraError, Capabilities, Capture
from camfleet.edge.cameras.settings import SettingsError
from camfleet.edge.cameras.vendor import require
from camfleet.proto.v1 import common_pb2

INSTALL = "sudo apt install python3-picamera2 (or pip install 'camfleet[pi]')"
#: libcamera AwbModeEnum values
AWB_MODES = {
    common_pb2.WHITE_BALANCE_AUTO: 0,
    common_pb2.WHITE_BALANCE_HOME: 2,  # Tungsten
    common_pb2.WHITE_BALANCE_OFFICE: 3,  # Fluorescent
    common_pb2.WHITE_BALANCE_SUNNY: 5,  # Daylight
    common_pb2.WHITE_BALANCE_CLOUDY: 6,
}
METADATA_KEYS = ("ExposureTime", "AnalogueGain", "ColourTemperature", "Lux", "DigitalGain")
SETTINGS = frozenset(
    {
        "width",
        "height",
        "jpeg_quality",
        "hflip",
        "vflip",
        "rotation",
        "exposure_us",
        "analogue_gain",
        "white_balance",
        "brightness",
        "contrast",
        "saturation",
        "sharpness",
        "crop_x",
        "crop_y",
        "crop_w",
        "crop_h",
    }
)


def _unit(value: int) -> float:
    """-100..100 -> 0..2 with 1 neutral (picamera2's Contrast/Saturation/Sharpness)."""
    return 1.0 + value / 100.0


class Picamera2Camera(Camera):
    platform = "picamera2"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.cam: Any = None
        self.libcamera: Any = None
        self._configured: tuple[Any, ...] | None = None
        self._loop = False  # an event loop (NULL preview) runs for this camera
        self.sensor_size = (4056, 3040)
        self.controls_info: dict[str, tuple[Any, Any, Any]] = {}
        self.properties: dict[str, Any] = {}

    def open(self) -> None:
        module = require("picamera2", INSTALL)
        self.libcamera = require("libcamera", INSTALL)
        try:
            self.cam = module.Picamera2(camera_num=int(self.options.get("camera_num", 0)))
        except (RuntimeError, IndexError, OSError) as exc:
            raise CameraError(f"picamera2: cannot open camera: {exc}") from None
        self._loop = False
        self.properties = dict(getattr(self.cam, "camera_properties", None) or {})
        size = self.properties.get("PixelArraySize") or getattr(self.cam, "sensor_resolution", None)
        if size:
            self.sensor_size = (int(size[0]), int(size[1]))
        self.controls_info = _control_ranges(self.cam)

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.stop()
            finally:
                closer = getattr(self.cam, "close", None) or self.cam.close_camera
                closer()
                self.cam = None
                self._configured = None

    def capabilities(self) -> Capabilities:
        info = {"camera_backend": "picamera2"}
        if self.cam is not None:
            info["sensor"] = str(self.properties.get("Model", ""))
        return Capabilities(
            platform=self.platform,
            settings=SETTINGS,
            max_width=self.sensor_size[0],
            max_height=self.sensor_size[1],
            features=frozenset({"jpeg", "metadata"}),
            info=info,
        )

    def validate(self, settings: common_pb2.CameraSettings) -> None:
        super().validate(settings)
        if settings.rotation not in (0, 180):
            raise SettingsError("picamera2 rotates by 0 or 180 only (use hflip/vflip)")
        if settings.HasField("white_balance") and settings.white_balance not in AWB_MODES:
            raise SettingsError("picamera2 has no such white balance mode")
        if self.cam is not None:
            for name, value in self._controls(settings).items():
                limits = self.controls_info.get(name)
                if limits is None:
                    raise SettingsError(f"this camera has no {name} control")
                low, high = limits[0], limits[1]
                if not isinstance(low, int | float) or not isinstance(high, int | float):
                    continue  # rectangles (ScalerCrop) are clamped by libcamera itself
                values = value if isinstance(value, tuple) else (value,)
                for v in values:
                    number = isinstance(v, int | float) and not isinstance(v, bool)
                    if number and not low <= v <= high:
                        raise SettingsError(f"picamera2 {name}={value} is outside {low}..{high}")

    def _controls(self, s: common_pb2.CameraSettings) -> dict[str, Any]:
        c: dict[str, Any] = {}
        if s.HasField("exposure_us"):
            c["AeEnable"] = s.exposure_us == 0
            if s.exposure_us:
                c["ExposureTime"] = s.exposure_us
        if s.HasField("analogue_gain") and s.analogue_gain:
            c["AnalogueGain"] = s.analogue_gain
        if s.HasField("white_balance"):
            c["AwbEnable"] = True
            c["AwbMode"] = AWB_MODES.get(s.white_balance, 0)
        if s.HasField("brightness"):
            c["Brightness"] = s.brightness / 100.0
        for name, control in (
            ("contrast", "Contrast"),
            ("saturation", "Saturation"),
            ("sharpness", "Sharpness"),
        ):
            if s.HasField(name):  # type: ignore[arg-type]
                c[control] = _unit(getattr(s, name))
        if s.HasField("crop_w"):
            w, h = self.sensor_size
            c["ScalerCrop"] = (
                int(s.crop_x * w),
                int(s.crop_y * h),
                int(s.crop_w * w),
                int(s.crop_h * h),
            )
        for key, text in s.backend.items():  # extras are raw controls: {"AfMode": "2"}
            c[key] = _parse(text)
        return c

    def capture(self, settings: common_pb2.CameraSettings) -> Capture:
        if self.cam is None:
            raise CameraError("picamera2 camera is not open")
        size = (settings.width, settings.height) if settings.HasField("width") else (1920, 1080)
        hflip = settings.hflip != (settings.rotation == 180)
        vflip = settings.vflip != (settings.rotation == 180)
        try:
            if self._configured != (size, hflip, vflip):
                self.cam.stop()
                # Today: create_still_configuration(); 2022: still_configuration() (today that
                # name is a configuration object, not a method).
                factory = getattr(self.cam, "create_still_configuration", None)
                if factory is None:
                    factory = self.cam.still_configuration
                config = factory(
                    main={"size": size},
                    transform=self.libcamera.Transform(hflip=int(hflip), vflip=int(vflip)),
                    buffer_count=int(self.options.get("buffer_count", 1)),
                )
                self.cam.configure(config)
                if not self._loop and hasattr(self.cam, "start_preview"):
                    self.cam.start_preview()  # NULL preview: the loop that feeds requests
                    self._loop = True
                self.cam.start()
                self._configured = (size, hflip, vflip)
            controls = self._controls(settings)
            if controls:
                self.cam.set_controls(controls)
            quality = settings.jpeg_quality if settings.HasField("jpeg_quality") else 90
            self.cam.options["quality"] = quality
            for _ in range(settings.warmup_frames):
                self.cam.capture_metadata()
            request = self.cam.capture_request()
            try:
                out = io.BytesIO()
                if "format" in inspect.signature(request.save).parameters:
                    request.save("main", out, format="jpeg")
                else:  # 2022: save(name, filename) needs a file name to pick the format
                    image = request.make_image("main")
                    image.convert("RGB").save(out, "JPEG", quality=quality)
                metadata = request.get_metadata()
            finally:
                request.release()
        except (RuntimeError, ValueError, TimeoutError) as exc:
            raise CameraError(f"picamera2: {exc}") from None
        used = common_pb2.CameraSettings()
        used.CopyFrom(settings)
        used.width, used.height, used.jpeg_quality = size[0], size[1], quality
        if "ExposureTime" in metadata:
            used.exposure_us = int(metadata["ExposureTime"])
        if "AnalogueGain" in metadata:
            used.analogue_gain = float(metadata["AnalogueGain"])
        meta = {k: str(metadata[k]) for k in METADATA_KEYS if k in metadata}
        return Capture(out.getvalue(), size[0], size[1], used, meta)


def _control_ranges(cam: Any) -> dict[str, tuple[Any, Any, Any]]:
    """{control name: (min, max, default)} from ``camera_controls`` (today) or from
    ``list_controls()`` (2022: libcamera ControlId -> ControlInfo objects)."""
    table = getattr(cam, "camera_controls", None)
    if table is None:
        table = cam.list_controls()
    out: dict[str, tuple[Any, Any, Any]] = {}
    for key, info in table.items():
        name = key if isinstance(key, str) else key.name
        if isinstance(info, tuple):
            out[name] = info
        else:
            out[name] = (info.min, info.max, info.default)
    return out


def _parse(text: str) -> Any:
    """A control value from text: "2" -> 2, "0.5" -> 0.5, "1.5,2.0" -> (1.5, 2.0), "true"."""
    if "," in text:
        return tuple(_parse(part.strip()) for part in text.split(","))
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
