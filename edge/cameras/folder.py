"""Replays JPEG files from a directory in name order: test footage as a camera.

Options: ``path`` (required), ``loop`` (default true: start again after the last file),
``pattern`` (default ``*.jp*g``). Files are sent as they are (no re-encode) unless the settings
ask for a different size or an image change, which is then applied in software.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from camfleet.edge import jpeg
from camfleet.edge.cameras.base import Camera, CameraError, Capabilities, Capture
from camfleet.edge.cameras.software import SOFTWARE_SETTINGS, apply_settings, needs_processing
from camfleet.errors import UserError
from camfleet.proto.v1 import common_pb2


class FolderCamera(Camera):
    platform = "folder"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        if "path" not in self.options:
            raise UserError("folder camera needs camera.options.path (a directory of JPEGs)")
        self.path = Path(str(self.options["path"])).expanduser()
        self.loop = bool(self.options.get("loop", True))
        self.pattern = str(self.options.get("pattern", "*.jp*g"))
        self.files: list[Path] = []
        self.position = 0

    def open(self) -> None:
        if not self.path.is_dir():
            raise CameraError(f"folder camera: {self.path} is not a directory")
        self.files = sorted(p for p in self.path.glob(self.pattern) if p.is_file())
        if not self.files:
            raise CameraError(f"folder camera: no {self.pattern} files in {self.path}")
        # position survives close/open: a reopen after an error continues, not restarts

    def close(self) -> None:
        self.files = []

    def capabilities(self) -> Capabilities:
        return Capabilities(
            platform=self.platform,
            settings=SOFTWARE_SETTINGS | {"width", "height", "jpeg_quality"},
            features=frozenset({"jpeg", "replay"}),
            info={
                "camera_backend": "folder",
                "folder": str(self.path),
                "files": str(len(self.files)),
            },
        )

    def capture(self, settings: common_pb2.CameraSettings) -> Capture:
        if not self.files:
            raise CameraError("folder camera is not open")
        if self.position >= len(self.files):
            if not self.loop:
                raise CameraError(f"folder camera: all {len(self.files)} files replayed")
            self.position = 0
        path = self.files[self.position]
        self.position += 1
        try:
            data = path.read_bytes()
            image: Image.Image = Image.open(io.BytesIO(data))
            size = image.size
        except (OSError, UnidentifiedImageError) as exc:
            raise CameraError(f"folder camera: cannot read {path.name}: {exc}") from None
        used = common_pb2.CameraSettings()
        used.CopyFrom(settings)
        used.ClearField("backend")
        wanted = (settings.width, settings.height) if settings.HasField("width") else size
        if (
            image.format != "JPEG"
            or wanted != size
            or needs_processing(settings)
            or (settings.HasField("jpeg_quality"))
        ):
            quality = settings.jpeg_quality if settings.HasField("jpeg_quality") else 85
            image = apply_settings(image.convert("RGB"), settings)
            if image.size != wanted:
                image = image.resize(wanted)
            data = jpeg.encode(image, quality)
            used.jpeg_quality = quality
            size = image.size
        used.width, used.height = size
        return Capture(data, size[0], size[1], used, {"source_file": path.name})
