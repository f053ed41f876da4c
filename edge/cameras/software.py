"""Neutral camera settings applied in software, for backends whose source cannot apply them
(synthetic scenes, replayed files, webcams without the control)."""

from __future__ import annotations

from PIL import Image, ImageEnhance, ImageOps

from camfleet.proto.v1 import common_pb2

#: settings this module applies (beyond width/height/quality, which callers handle)
SOFTWARE_SETTINGS = frozenset(
    {
        "brightness",
        "contrast",
        "saturation",
        "sharpness",
        "hflip",
        "vflip",
        "rotation",
        "effect",
        "crop_x",
        "crop_y",
        "crop_w",
        "crop_h",
    }
)


def needs_processing(s: common_pb2.CameraSettings) -> bool:
    """True when ``s`` asks for any change :func:`apply_settings` makes."""
    return bool(
        s.HasField("crop_w")
        or s.hflip
        or s.vflip
        or s.rotation
        or s.brightness
        or s.contrast
        or s.saturation
        or s.sharpness
        or s.effect not in (common_pb2.EFFECT_UNSPECIFIED, common_pb2.EFFECT_NONE)
    )


def apply_settings(image: Image.Image, s: common_pb2.CameraSettings) -> Image.Image:
    """Apply neutral image settings in software (crop, flips, rotation, tone, effect)."""
    if s.HasField("crop_w"):
        w, h = image.size
        box = (
            int(s.crop_x * w),
            int(s.crop_y * h),
            int((s.crop_x + s.crop_w) * w),
            int((s.crop_y + s.crop_h) * h),
        )
        image = image.crop(box).resize((w, h))
    if s.hflip:
        image = ImageOps.mirror(image)
    if s.vflip:
        image = ImageOps.flip(image)
    if s.rotation:
        image = image.rotate(-s.rotation, expand=True)
    for name, enhancer in (
        ("brightness", ImageEnhance.Brightness),
        ("contrast", ImageEnhance.Contrast),
        ("saturation", ImageEnhance.Color),
        ("sharpness", ImageEnhance.Sharpness),
    ):
        value = getattr(s, name)
        if value:
            image = enhancer(image).enhance(1.0 + value / 100.0)
    if s.effect == common_pb2.EFFECT_GRAYSCALE:
        image = ImageOps.grayscale(image).convert("RGB")
    elif s.effect == common_pb2.EFFECT_NEGATIVE:
        image = ImageOps.invert(image)
    elif s.effect == common_pb2.EFFECT_SEPIA:
        image = ImageOps.colorize(ImageOps.grayscale(image), "#3b2a14", "#f5e6c8")
    return image
