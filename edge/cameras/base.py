"""The one interface every camera backend implements, and what a capture returns.

A backend turns device-neutral :class:`CameraSettings` (proto common.proto) into its own API's
values, captures one JPEG and reports the settings it really used. Backends are small adapters:
range checks of neutral values live in :mod:`camfleet.edge.cameras.settings`, JPEG encoding in
:mod:`camfleet.edge.jpeg`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from camfleet.proto.v1 import common_pb2


class CameraError(Exception):
    """The camera failed (not present, busy, timed out). The agent reports it, never crashes."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, announced in the birth (``capabilities``) and ``info``.

    ``settings`` names the CameraSettings fields the backend applies; others are ignored and
    reported as unset in frames. ``resolutions`` lists fixed sizes when the sensor has them
    (empty = any size up to ``max_width`` x ``max_height``).
    """

    platform: str
    settings: frozenset[str]
    max_width: int = 4096
    max_height: int = 4096
    resolutions: tuple[tuple[int, int], ...] = ()
    features: frozenset[str] = frozenset()
    info: dict[str, str] = field(default_factory=dict)


@dataclass
class Capture:
    """One captured image: JPEG bytes, its size, the settings really used, and metadata."""

    jpeg: bytes
    width: int
    height: int
    settings: common_pb2.CameraSettings
    metadata: dict[str, str] = field(default_factory=dict)


class Camera(abc.ABC):
    """A camera backend. Not thread-safe: the agent serialises calls.

    ``options`` are the backend-specific keys of the config file's ``[camera.options]`` table;
    ``open`` acquires the device, ``capture`` takes one frame with the given effective settings
    (defaults already merged with overrides), ``close`` releases it and may be called twice.
    """

    platform: str = "camera"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    def validate(self, settings: common_pb2.CameraSettings) -> None:
        """Raise SettingsError when this backend cannot apply ``settings`` (beyond range checks)."""
        from camfleet.edge.cameras.settings import check_supported

        check_supported(settings, self.capabilities())

    @abc.abstractmethod
    def capture(self, settings: common_pb2.CameraSettings) -> Capture: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Camera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
