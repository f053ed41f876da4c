"""Device-neutral camera settings: range checks, merging, and conversion to/from plain dicts.

The ranges are those documented in proto/camfleet/v1/common.proto. Every check raises
:class:`SettingsError` with one line naming the setting and the allowed range, which the agent
sends back as a rejected ack or a refused ``reported``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from camfleet.proto.v1 import common_pb2

if TYPE_CHECKING:
    from camfleet.edge.cameras.base import Capabilities


class SettingsError(ValueError):
    """Camera settings that are out of range or unsupported by the backend."""


#: name -> (low, high) inclusive, for the numeric neutral settings.
RANGES: dict[str, tuple[float, float]] = {
    "width": (16, 16384),
    "height": (16, 16384),
    "jpeg_quality": (1, 100),
    "brightness": (-100, 100),
    "contrast": (-100, 100),
    "saturation": (-100, 100),
    "sharpness": (-100, 100),
    "exposure_us": (0, 60_000_000),
    "analogue_gain": (0, 64),
    "iso": (0, 6400),
    "warmup_frames": (0, 300),
    "crop_x": (0, 1),
    "crop_y": (0, 1),
    "crop_w": (0, 1),
    "crop_h": (0, 1),
}
ROTATIONS = (0, 90, 180, 270)
CROP_FIELDS = ("crop_x", "crop_y", "crop_w", "crop_h")
#: Every neutral field name (not ``backend``).
FIELDS = tuple(f.name for f in common_pb2.CameraSettings.DESCRIPTOR.fields if f.name != "backend")


def set_fields(settings: common_pb2.CameraSettings) -> set[str]:
    """Names of the neutral fields present in ``settings``."""
    return {f.name for f, _ in settings.ListFields() if f.name != "backend"}


def check(settings: common_pb2.CameraSettings) -> None:
    """Raise SettingsError for any neutral value outside its documented range."""
    for name in set_fields(settings):
        value = getattr(settings, name)
        if name in RANGES:
            low, high = RANGES[name]
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(f"camera setting {name}={value} is not a number")
            if not low <= value <= high:
                raise SettingsError(f"camera setting {name}={value} is outside {low:g}..{high:g}")
        elif name == "rotation" and value not in ROTATIONS:
            raise SettingsError(f"camera setting rotation={value} must be one of 0, 90, 180, 270")
        elif name == "white_balance" and value not in common_pb2.WhiteBalance.values():
            raise SettingsError(f"camera setting white_balance={value} is not a known mode")
        elif name == "effect" and value not in common_pb2.Effect.values():
            raise SettingsError(f"camera setting effect={value} is not a known effect")
    if settings.HasField("width") != settings.HasField("height"):
        raise SettingsError("camera settings width and height must be given together")
    present = [settings.HasField(n) for n in CROP_FIELDS]  # type: ignore[arg-type]
    if any(present):
        if not all(present):
            raise SettingsError("camera settings crop_x, crop_y, crop_w, crop_h go together")
        if settings.crop_w <= 0 or settings.crop_h <= 0:
            raise SettingsError("camera settings crop_w and crop_h must be > 0")
        if settings.crop_x + settings.crop_w > 1.0001 or settings.crop_y + settings.crop_h > 1.0001:
            raise SettingsError("camera crop region extends past the image (x+w or y+h > 1)")


def check_supported(settings: common_pb2.CameraSettings, caps: Capabilities) -> None:
    """Range checks plus what this backend supports (size limits, fixed resolutions)."""
    check(settings)
    if settings.HasField("width"):
        size = (settings.width, settings.height)
        if caps.resolutions and size not in caps.resolutions:
            sizes = ", ".join(f"{w}x{h}" for w, h in caps.resolutions)
            raise SettingsError(
                f"{caps.platform} camera cannot capture {size[0]}x{size[1]}; choose one of {sizes}"
            )
        if size[0] > caps.max_width or size[1] > caps.max_height:
            raise SettingsError(
                f"{caps.platform} camera cannot capture {size[0]}x{size[1]}: "
                f"largest is {caps.max_width}x{caps.max_height}"
            )


def merged(*layers: common_pb2.CameraSettings | None) -> common_pb2.CameraSettings:
    """Later layers override earlier ones field by field (and key by key in ``backend``)."""
    result = common_pb2.CameraSettings()
    for layer in layers:
        if layer is not None:
            result.MergeFrom(layer)
    return result


_ENUMS = {"white_balance": common_pb2.WhiteBalance, "effect": common_pb2.Effect}


def from_dict(values: dict[str, Any], where: str = "camera") -> common_pb2.CameraSettings:
    """Build CameraSettings from config-file values (enum names like "sunny" or "SEPIA" allowed).

    Raises SettingsError naming ``where.key`` for unknown keys and wrong types.
    """
    settings = common_pb2.CameraSettings()
    for key, value in values.items():
        if key == "backend":
            if not isinstance(value, dict):
                raise SettingsError(f"{where}.backend must be a table of strings")
            for k, v in value.items():
                settings.backend[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
            continue
        if key not in FIELDS:
            raise SettingsError(f"unknown camera setting {where}.{key}")
        if key in _ENUMS:
            value = _enum_value(key, value, where)
        field = common_pb2.CameraSettings.DESCRIPTOR.fields_by_name[key]
        try:
            if field.type == field.TYPE_BOOL:
                if not isinstance(value, bool):
                    raise TypeError("expected true or false")
            elif field.type == field.TYPE_FLOAT:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise TypeError("expected a number")
                value = float(value)
            elif isinstance(value, bool) or not isinstance(value, int):
                raise TypeError("expected an integer")
            setattr(settings, key, value)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{where}.{key} = {value!r}: {exc}") from None
    check(settings)
    return settings


def _enum_value(key: str, value: Any, where: str) -> int:
    enum = _ENUMS[key]
    prefix = "WHITE_BALANCE_" if key == "white_balance" else "EFFECT_"
    if isinstance(value, str):
        try:
            return int(enum.Value(prefix + value.upper()))
        except ValueError:
            pass
        allowed = ", ".join(n[len(prefix) :].lower() for n in enum.keys()[1:])
        raise SettingsError(f"{where}.{key} = {value!r}: use one of {allowed}")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise SettingsError(f"{where}.{key} = {value!r}: expected a name")


def to_dict(settings: common_pb2.CameraSettings) -> dict[str, Any]:
    """The present fields as plain values (enums by lower-case name), e.g. for docs and logs."""
    out: dict[str, Any] = {}
    for name in sorted(set_fields(settings)):
        value = getattr(settings, name)
        if name in _ENUMS:
            prefix = "WHITE_BALANCE_" if name == "white_balance" else "EFFECT_"
            value = _ENUMS[name].Name(value)[len(prefix) :].lower()
        out[name] = value
    if settings.backend:
        out["backend"] = dict(settings.backend)
    return out
