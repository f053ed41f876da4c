"""Conformance fake of picamera2 as released today (0.3.x; "The Picamera2 Library" manual).

The 2022 preview release differs (no ``camera_controls``, ``*_configuration()`` methods, no event
loop until ``start_preview()``, ``save(name, filename)``): that era has its own fake in
``tests/fakes/era2022/picamera2``.

Same API surface the agent may use: Picamera2(camera_num), camera_properties, camera_controls
({name: (min, max, default)}), sensor_modes, still/preview configurations (attribute and
create_*_configuration), configure, start, stop, set_controls (unknown control -> RuntimeError,
out of the advertised range -> ValueError), options["quality"], capture_file, capture_image,
capture_array, capture_metadata, capture_request -> CompletedRequest(save, get_metadata,
make_image, make_array, release), close. Every call is recorded in ``Picamera2.calls``.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

CAMERAS = [{"Model": "imx477", "PixelArraySize": (4056, 3040), "Location": 2, "Rotation": 0}]
CONTROLS: dict[str, tuple[Any, Any, Any]] = {
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


class CameraConfiguration(dict):
    """Configurations are dict-like (newer releases wrap them in an object with the same keys)."""


def _stream(size: tuple[int, int], fmt: str) -> dict[str, Any]:
    w, h = size
    if w < 64 or h < 64 or w > 4056 or h > 3040:
        raise ValueError(f"stream size {size} outside sensor limits")
    return {"size": (int(w), int(h)), "format": fmt}


class CompletedRequest:
    def __init__(self, cam: Picamera2) -> None:
        self.cam = cam
        self.released = False

    def _check(self) -> None:
        if self.released:
            raise RuntimeError("request already released")

    def make_image(self, name: str = "main") -> Image.Image:
        self._check()
        return self.cam._image(name)

    def make_array(self, name: str = "main") -> Any:
        import numpy as np

        return np.asarray(self.make_image(name))

    def save(self, name: str, file_output: Any, format: str | None = None) -> None:
        self._check()
        self.cam.calls.append(("request.save", name, format))
        self.cam._save(self.make_image(name), file_output, format)

    def get_metadata(self) -> dict[str, Any]:
        self._check()
        return self.cam._metadata()

    def release(self) -> None:
        self.cam.calls.append(("request.release",))
        self.released = True
        self.cam.open_requests -= 1


class Picamera2:
    calls: list[tuple[Any, ...]] = []  # class-level: tests reset it
    instances: list[Picamera2] = []

    def __init__(self, camera_num: int = 0, tuning: Any = None) -> None:
        if camera_num >= len(CAMERAS):
            raise IndexError("list index out of range")  # what picamera2 raises for no camera
        Picamera2.calls.append(("__init__", camera_num))
        Picamera2.instances.append(self)
        self.camera_properties = dict(CAMERAS[camera_num])
        self.camera_controls = dict(CONTROLS)
        self.sensor_modes = [
            {"size": (2028, 1520), "fps": 40.0},
            {"size": (4056, 3040), "fps": 10.0},
        ]
        self.options: dict[str, Any] = {"quality": 90, "compress_level": 1}
        self.controls: dict[str, Any] = {}
        self.config: CameraConfiguration | None = None
        self.started = False
        self.event_loop = False
        self.closed = False
        self.open_requests = 0
        self.still_configuration: Any = Picamera2.create_still_configuration(self)
        self.preview_configuration: Any = Picamera2.create_preview_configuration(self)

    def _alive(self) -> None:
        if self.closed:
            raise RuntimeError("Camera is closed")

    def create_still_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 1,
        controls: dict | None = None,
        display: str | None = None,
        encode: str | None = None,
        queue: bool = True,
    ) -> CameraConfiguration:
        main = main or {}
        config = CameraConfiguration(
            use_case="still",
            main=_stream(main.get("size", (4056, 3040)), main.get("format", "BGR888")),
            lores=_stream(lores["size"], "YUV420") if lores else None,
            transform=transform,
            buffer_count=buffer_count,
            controls=controls or {},
        )
        if lores and (lores["size"][0] > config["main"]["size"][0]):
            raise RuntimeError("lores stream dimensions may not exceed main stream")
        return config

    def create_preview_configuration(
        self, main: dict | None = None, **kwargs: Any
    ) -> CameraConfiguration:
        main = main or {"size": (640, 480)}
        config = Picamera2.create_still_configuration(self, main=main, **kwargs)
        config["use_case"] = "preview"
        return config

    def configure(self, camera_config: CameraConfiguration | str | None = None) -> None:
        self._alive()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if isinstance(camera_config, str):
            camera_config = getattr(self, f"{camera_config}_configuration")
        self.config = camera_config or self.preview_configuration
        self.calls.append(("configure", dict(self.config)))

    def start_preview(self, preview: Any = None, **kwargs: Any) -> None:
        self._alive()
        if self.event_loop:
            raise RuntimeError("An event loop is already running")
        self.event_loop = True  # None/False: the NULL preview, which only runs the loop
        self.calls.append(("start_preview", preview))

    def start(self, config: Any = None, show_preview: bool | None = False) -> None:
        self._alive()
        if config is not None:
            self.configure(config)
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        if show_preview is not None and not self.event_loop:
            self.start_preview(show_preview)  # today's start() runs a NULL preview itself
        self.started = True
        self.calls.append(("start",))

    def stop(self) -> None:
        self.started = False
        self.calls.append(("stop",))

    def close(self) -> None:
        self.started = False
        self.closed = True
        self.calls.append(("close",))

    def set_controls(self, controls: dict[str, Any]) -> None:
        self._alive()
        for name, value in controls.items():
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
            low, high, _ = self.camera_controls[name]
            if not isinstance(low, int | float):
                continue  # rectangles: libcamera clamps them to the sensor
            for v in value if isinstance(value, tuple) else (value,):
                number = isinstance(v, int | float) and not isinstance(v, bool)
                if number and not low <= v <= high:
                    raise ValueError(f"{name} value {value} outside {low}..{high}")
        self.controls.update(controls)
        self.calls.append(("set_controls", dict(controls)))

    # --- capture ------------------------------------------------------------------------------

    def _require_running(self) -> None:
        self._alive()
        if not self.started:
            raise RuntimeError("Camera must be started before capturing")

    def _image(self, name: str = "main") -> Image.Image:
        assert self.config is not None
        stream = self.config.get(name)
        if stream is None:
            raise KeyError(f"stream {name!r} is not configured")
        w, h = stream["size"]
        level = int(127 + 100 * self.controls.get("Brightness", 0.0))
        return Image.new("RGB", (w, h), (level, 90, 40))

    def _save(self, image: Image.Image, file_output: Any, format: str | None) -> None:
        fmt = (format or "jpeg").lower()
        if fmt not in ("jpeg", "jpg", "png", "bmp"):
            raise ValueError(f"unsupported format {fmt}")
        quality = self.options["quality"]
        if not 1 <= quality <= 95:
            raise ValueError("quality must be 1..95")  # Pillow's documented JPEG range
        if isinstance(file_output, str | bytes):
            image.save(
                file_output, "JPEG" if fmt in ("jpeg", "jpg") else fmt.upper(), quality=quality
            )
        else:
            image.save(
                file_output, "JPEG" if fmt in ("jpeg", "jpg") else fmt.upper(), quality=quality
            )

    def _metadata(self) -> dict[str, Any]:
        ae = self.controls.get("AeEnable", True)
        return {
            "ExposureTime": 20000 if ae else self.controls.get("ExposureTime", 20000),
            "AnalogueGain": self.controls.get("AnalogueGain", 1.0),
            "ColourTemperature": 4800,
            "Lux": 312.5,
            "SensorTimestamp": 123456789,
        }

    def capture_request(self, wait: Any = None, flush: Any = None) -> CompletedRequest:
        self._require_running()
        self.calls.append(("capture_request",))
        self.open_requests += 1
        return CompletedRequest(self)

    def capture_metadata(self, wait: Any = None) -> dict[str, Any]:
        self._require_running()
        self.calls.append(("capture_metadata",))
        return self._metadata()

    def capture_file(
        self, file_output: Any, name: str = "main", format: str | None = None, wait: Any = None
    ) -> dict[str, Any]:
        self._require_running()
        self.calls.append(("capture_file", name, format))
        self._save(self._image(name), file_output, format)
        return self._metadata()

    def capture_image(self, name: str = "main", wait: Any = None) -> Image.Image:
        self._require_running()
        self.calls.append(("capture_image", name))
        return self._image(name)

    def capture_array(self, name: str = "main", wait: Any = None) -> Any:
        import numpy as np

        return np.asarray(self.capture_image(name))
