"""Camera backends: one module per backend, chosen by name, imported only when chosen.

``create(name, options)`` returns an unopened :class:`~camfleet.edge.cameras.base.Camera`.
Hardware libraries (picamera2, picamera, maix, cv2) are imported inside the backend's ``open``
through :func:`camfleet.edge.cameras.vendor.require`, so a missing one is a one-line UserError
naming what to install, and ``camfleet edge`` never imports a camera library it does not use.
"""

from __future__ import annotations

import importlib
from typing import Any

from camfleet.edge.cameras.base import Camera, CameraError, Capabilities, Capture
from camfleet.errors import UserError

#: backend name -> (module, class)
BACKENDS: dict[str, tuple[str, str]] = {
    "synthetic": ("camfleet.edge.cameras.synthetic", "SyntheticCamera"),
    "folder": ("camfleet.edge.cameras.folder", "FolderCamera"),
    "opencv": ("camfleet.edge.cameras.opencv", "OpenCVCamera"),
    "picamera2": ("camfleet.edge.cameras.picamera2", "Picamera2Camera"),
    "picamera": ("camfleet.edge.cameras.picamera", "PiCameraCamera"),
    "maix": ("camfleet.edge.cameras.maix", "MaixCamera"),
}


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise UserError(f"unknown camera backend {name!r}: use one of {', '.join(BACKENDS)}")
    return name


def create(name: str, options: dict[str, Any] | None = None) -> Camera:
    """An unopened camera of backend ``name``; UserError for an unknown name."""
    module_name, class_name = BACKENDS[check_backend(name)]
    cls = getattr(importlib.import_module(module_name), class_name)
    camera = cls(options or {})
    assert isinstance(camera, Camera)
    return camera


__all__ = ["BACKENDS", "Camera", "CameraError", "Capabilities", "Capture", "create"]
