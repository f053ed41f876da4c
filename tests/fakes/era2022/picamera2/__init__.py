"""Fake of picamera2 as its 2022 README documents it (the preview release, before 0.3).

What differs from the current release, and the backend must cope with:
- ``Picamera2(camera_num=0, verbose=1)``; no ``camera_properties``: the sensor size is
  ``sensor_resolution``;
- no ``camera_controls``: ``list_controls()`` returns libcamera's own map, ControlId objects
  (with ``.name``) to ControlInfo objects (``.min``, ``.max``, ``.default``);
- configurations come from the methods ``preview_configuration(...)`` /
  ``still_configuration(...)`` (no ``create_*_configuration``);
- no event loop of its own: frames only flow once ``start_preview()`` (a NULL preview when
  given no window) runs one. Without it a capture waits forever; this fake raises instead so a
  test cannot hang;
- ``CompletedRequest.save(name, filename)``: no ``format``; the format comes from the file
  name's extension (Pillow), so a file object without a name cannot be saved;
- ``close_camera()`` (no ``close``).
Every call is recorded in ``Picamera2.calls``.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

SENSOR = (4056, 3040)
RANGES: dict[str, tuple[Any, Any, Any]] = {
    "AeEnable": (False, True, True),
    "ExposureTime": (114, 694422939, 20000),
    "AnalogueGain": (1.0, 22.26, 1.0),
    "AwbEnable": (False, True, True),
    "AwbMode": (0, 7, 0),
    "ColourGains": (0.0, 32.0, None),
    "Brightness": (-1.0, 1.0, 0.0),
    "Contrast": (0.0, 32.0, 1.0),
    "Saturation": (0.0, 32.0, 1.0),
    "Sharpness": (0.0, 16.0, 1.0),
    "ScalerCrop": ((0, 0, 64, 64), (0, 0, 4056, 3040), (0, 0, 4056, 3040)),
}


class ControlId:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<ControlId {self.name}>"


class ControlInfo:
    def __init__(self, low: Any, high: Any, default: Any) -> None:
        self.min, self.max, self.default = low, high, default


class CompletedRequest:
    def __init__(self, cam: Picamera2) -> None:
        self.cam = cam
        self.released = False

    def make_image(self, name: str) -> Image.Image:
        if self.released:
            raise RuntimeError("request already released")
        return self.cam._image(name)

    def save(self, name: str, filename: Any) -> None:
        img = self.make_image(name)
        self.cam.calls.append(("request.save", name))
        # the 2022 code: img.save(filename, quality=...), the format from the name
        img.save(filename, quality=self.cam.options.get("quality", 90))

    def get_metadata(self) -> dict[str, Any]:
        return self.cam._metadata()

    def release(self) -> None:
        self.cam.calls.append(("request.release",))
        self.released = True
        self.cam.open_requests -= 1


class Picamera2:
    calls: list[tuple[Any, ...]] = []
    instances: list[Picamera2] = []

    def __init__(self, camera_num: int = 0, verbose: int = 1) -> None:
        if camera_num != 0:
            raise IndexError("list index out of range")
        Picamera2.calls.append(("__init__", camera_num))
        Picamera2.instances.append(self)
        self.sensor_resolution = SENSOR
        self.options: dict[str, Any] = {"quality": 90, "compress_level": 1}
        self.controls: dict[str, Any] = {}
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.event_loop = False
        self.closed = False
        self.open_requests = 0

    def list_controls(self) -> dict[ControlId, ControlInfo]:
        return {ControlId(k): ControlInfo(*v) for k, v in RANGES.items()}

    def _config(self, use_case: str, main: dict, lores: Any, transform: Any, buffer_count: int,
                controls: dict) -> dict[str, Any]:  # fmt: skip
        size = tuple(main.get("size", (640, 480) if use_case == "preview" else SENSOR))
        if not (64 <= size[0] <= SENSOR[0] and 64 <= size[1] <= SENSOR[1]):
            raise ValueError(f"stream size {size} outside sensor limits")
        return {
            "use_case": use_case,
            "main": {"size": size, "format": "BGR888"},
            "lores": {"size": tuple(lores["size"]), "format": "YUV420"} if lores else None,
            "transform": transform,
            "buffer_count": buffer_count,
            "controls": controls,
        }

    def preview_configuration(
        self,
        main: dict | None = None,
        lores: Any = None,
        raw: Any = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 4,
        controls: dict | None = None,
    ) -> dict:
        return self._config("preview", main or {}, lores, transform, buffer_count, controls or {})

    def still_configuration(
        self,
        main: dict | None = None,
        lores: Any = None,
        raw: Any = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 2,
        controls: dict | None = None,
    ) -> dict:
        return self._config("still", main or {}, lores, transform, buffer_count, controls or {})

    def configure(self, camera_config: dict | None = None) -> None:
        if self.closed:
            raise RuntimeError("Camera is closed")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.camera_config = camera_config or self.preview_configuration()
        self.calls.append(("configure", dict(self.camera_config)))

    def start_preview(self, preview: Any = None, **kwargs: Any) -> None:
        if self.event_loop:
            raise RuntimeError("An event loop is already running")
        self.event_loop = True
        self.calls.append(("start_preview", preview))

    def start(self, controls: dict | None = None) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        self.calls.append(("start",))

    def stop(self) -> None:
        self.started = False
        self.calls.append(("stop",))

    def close_camera(self) -> None:
        self.started = False
        self.closed = True
        self.calls.append(("close_camera",))

    def set_controls(self, controls: dict[str, Any]) -> None:
        for name, value in controls.items():
            if name not in RANGES:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
            low, high, _ = RANGES[name]
            if isinstance(low, int | float):
                for v in value if isinstance(value, tuple) else (value,):
                    number = isinstance(v, int | float) and not isinstance(v, bool)
                    if number and not low <= v <= high:
                        raise ValueError(f"{name} value {value} outside {low}..{high}")
        self.controls.update(controls)
        self.calls.append(("set_controls", dict(controls)))

    def _running(self) -> None:
        if not self.started:
            raise RuntimeError("Camera must be started before capturing")
        if not self.event_loop:
            # the real 2022 code blocks here forever: nothing feeds requests to libcamera
            raise RuntimeError("no event loop: call start_preview() first (the capture would hang)")

    def _image(self, name: str) -> Image.Image:
        assert self.camera_config is not None
        stream = self.camera_config.get(name)
        if not stream:
            raise KeyError(name)
        level = int(127 + 100 * self.controls.get("Brightness", 0.0))
        return Image.new("RGB", stream["size"], (level, 90, 40))

    def _metadata(self) -> dict[str, Any]:
        return {"ExposureTime": self.controls.get("ExposureTime", 20000),
                "AnalogueGain": self.controls.get("AnalogueGain", 1.0),
                "ColourTemperature": 4800, "Lux": 312.5}  # fmt: skip

    def capture_request(self) -> CompletedRequest:
        self._running()
        self.calls.append(("capture_request",))
        self.open_requests += 1
        return CompletedRequest(self)

    def capture_metadata(self) -> dict[str, Any]:
        self._running()
        self.calls.append(("capture_metadata",))
        return self._metadata()
