"""The camera: board pin profiles, neutral CameraSettings -> esp32-camera calls, capture.

Settings arrive in device-neutral units (common.proto CameraSettings) and are mapped onto the
driver's ranges (quality 63..10, brightness/contrast/saturation -2..2); ``apply`` returns the
values really used, in neutral units, for the frame metadata.
"""

import gc

import camera
import cfg

_DEFAULT = cfg.DEFAULTS["camera"]  # what a setting the desired config leaves out falls back to

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy only: MicroPython has no typing module
    from typing import Any  # noqa: F401  (used in type comments)

# Board profiles from lemariva's micropython-camera-driver README: the pins, plus what a board
# needs at init beyond them. "ai-thinker" uses the driver's pins as they are; "t-camera-mini"
# runs its XCLK at 20 MHz and sits behind an AXP PMU whose USB current limit must be turned off
# before the sensor starts, or init fails (README). Keys other than pins: "xclk_freq" (Hz) and
# "pmu" ("axp": clear the limit bits of register 0x30 at I2C 0x34, SCL 22 / SDA 21).
BOARDS = {
    "ai-thinker": {},
    "m5camera-b": {
        "d0": 32,
        "d1": 35,
        "d2": 34,
        "d3": 5,
        "d4": 39,
        "d5": 18,
        "d6": 36,
        "d7": 19,
        "href": 26,
        "vsync": 25,
        "reset": 15,
        "sioc": 23,
        "siod": 22,
        "xclk": 27,
        "pclk": 21,
        "xclk_freq": 10000000,
    },
    "t-camera-mini": {
        "d0": 5,
        "d1": 14,
        "d2": 4,
        "d3": 15,
        "d4": 18,
        "d5": 23,
        "d6": 36,
        "d7": 39,
        "href": 25,
        "vsync": 27,
        "reset": -1,
        "pwdn": -1,
        "sioc": 12,
        "siod": 13,
        "xclk": 32,
        "pclk": 19,
        "xclk_freq": 20000000,
        "pmu": "axp",
    },
}

# The driver's default pins (modcamera.h), which are the AI-Thinker ESP32-CAM's.
DRIVER_PINS = {
    "d0": 5,
    "d1": 18,
    "d2": 19,
    "d3": 21,
    "d4": 36,
    "d5": 39,
    "d6": 34,
    "d7": 35,
    "vsync": 25,
    "href": 23,
    "pclk": 22,
    "pwdn": 32,
    "reset": -1,
    "xclk": 0,
    "siod": 26,
    "sioc": 27,
}
_NOT_PINS = ("xclk_freq", "pmu")

AXP_ADDR = 0x34  # AXP192/AXP202 on the T-Camera Mini's I2C bus (SCL 22, SDA 21)
AXP_IPS_SET = 0x30  # VBUS-IPSOUT path: bits 1..0 hold the USB current limit

FRAMESIZES = (
    ("FRAME_QQVGA", 160, 120),
    ("FRAME_QCIF", 176, 144),
    ("FRAME_HQVGA", 240, 176),
    ("FRAME_240X240", 240, 240),
    ("FRAME_QVGA", 320, 240),
    ("FRAME_CIF", 400, 296),
    ("FRAME_HVGA", 480, 320),
    ("FRAME_VGA", 640, 480),
    ("FRAME_SVGA", 800, 600),
    ("FRAME_XGA", 1024, 768),
    ("FRAME_HD", 1280, 720),
    ("FRAME_SXGA", 1280, 1024),
    ("FRAME_UXGA", 1600, 1200),
    ("FRAME_FHD", 1920, 1080),
)

_EFFECTS = {
    1: "EFFECT_NONE",
    2: "EFFECT_NEG",
    3: "EFFECT_BW",
    4: "EFFECT_RED",
    5: "EFFECT_GREEN",
    6: "EFFECT_BLUE",
    7: "EFFECT_RETRO",
}
_WB = {1: "WB_NONE", 2: "WB_SUNNY", 3: "WB_CLOUDY", 4: "WB_OFFICE", 5: "WB_HOME"}


class SettingsError(ValueError):
    pass


def framesize_for(width, height):
    for name, w, h in FRAMESIZES:
        if w == width and h == height:
            return getattr(camera, name, None)
    return None


def validate(settings):
    """Raise SettingsError naming the first value the camera cannot do."""
    w = settings.get("width")
    h = settings.get("height")
    if (w is not None or h is not None) and framesize_for(w, h) is None:
        raise SettingsError("no OV2640 framesize %sx%s" % (w, h))
    q = settings.get("jpeg_quality")
    if q is not None and not 1 <= q <= 100:
        raise SettingsError("jpeg_quality %d not in 1..100" % q)
    for name in ("brightness", "contrast", "saturation"):
        v = settings.get(name)
        if v is not None and not -100 <= v <= 100:
            raise SettingsError("%s %d not in -100..100" % (name, v))
    if settings.get("effect", 1) not in _EFFECTS:
        raise SettingsError("unsupported effect %d" % settings["effect"])
    if settings.get("white_balance", 1) not in _WB:
        raise SettingsError("unsupported white balance %d" % settings["white_balance"])


def _level(v):
    """-100..100 -> the driver's -2..2."""
    return max(-2, min(2, (v + (25 if v >= 0 else -25)) // 50))


def _quality(jq):
    """Neutral 1..100 (higher is better) -> driver 63..10 (lower is better)."""
    return 63 - (jq - 1) * 53 // 99


def _neutral_quality(q):
    return 1 + (63 - q) * 99 // 53


def used_pins(profile):
    """GPIOs the camera of this board profile occupies (a wake source must not use them)."""
    pins = dict(DRIVER_PINS)
    for k in profile:
        if k not in _NOT_PINS:
            pins[k] = profile[k]
    return [p for p in pins.values() if p >= 0]


def _buffer_bytes(framesize):
    """JPEG frame buffer esp32-camera allocates at init for this framesize (w * h / 5)."""
    for name, w, h in FRAMESIZES:
        if getattr(camera, name, None) == framesize:
            return w * h // 5
    return 0


class CaptureError(OSError):
    """The driver gave no frame (capture() returned False: timeout, or FB-OVF when the JPEG did
    not fit the buffer sized at init)."""


class Camera:
    def __init__(self, board="ai-thinker", pins=None):
        self.board = board
        self.profile = pins if pins is not None else BOARDS.get(board, {})  # type: Any
        self.on = False
        self.status = "off"
        self.init_size = None  # framesize the running init sized its JPEG buffer for
        self.applied = {}  # driver value of each sensor setting now in force
        self.discard = 0  # frames to drop before the next one is the caller's

    def start(self, settings=None):
        """Init the sensor for ``settings`` (framesize and quality at init: the JPEG buffer is
        sized for the init framesize, and larger frames are dropped). False (status set) when
        it fails."""
        if self.on:
            return True
        settings = settings or {}
        size = framesize_for(
            settings.get("width", _DEFAULT["width"]), settings.get("height", _DEFAULT["height"])
        )
        q = _quality(settings.get("jpeg_quality", _DEFAULT["jpeg_quality"]))
        kw = {}
        for k in self.profile:
            if k != "pmu":
                kw[k] = self.profile[k]
        try:
            if self.profile.get("pmu") == "axp":
                _axp_lift_usb_limit()
            ok = camera.init(
                0,
                format=camera.JPEG,
                framesize=size,
                quality=q,
                fb_size=1,
                fb_location=camera.PSRAM,
                **kw,
            )
        except Exception as e:  # "Camera Init Failed", bad pins, PMU not answering
            self.status = "init_failed: %s" % e
            return False
        if ok is False:
            self.status = "init_failed"
            return False
        self.on = True
        self.status = "ok"
        self.init_size = size
        # what the sensor runs after init: the init framesize/quality, the rest at defaults
        self.applied = {
            "framesize": size,
            "quality": q,
            "brightness": 0,
            "contrast": 0,
            "saturation": 0,
            "mirror": 0,
            "flip": 0,
            "speffect": camera.EFFECT_NONE,
            "whitebalance": camera.WB_NONE,
        }
        # the first frames after a start are dark/green while exposure settles
        self.discard = max(1, settings.get("warmup_frames", _DEFAULT["warmup_frames"]))
        return True

    def stop(self):
        if self.on:
            camera.deinit()
            self.on = False

    def needs_start(self, settings):
        """True when ``apply(settings)`` will (re)start the sensor: off, or a framesize whose
        JPEG does not fit the buffer the running init made."""
        size = framesize_for(
            settings.get("width", _DEFAULT["width"]), settings.get("height", _DEFAULT["height"])
        )
        return not self.on or _buffer_bytes(size) > _buffer_bytes(self.init_size)

    def _set(self, name, value):
        if self.applied.get(name) == value:
            return
        if getattr(camera, name)(value) is False:
            raise CaptureError("camera.%s failed: sensor not answering" % name)
        self.applied[name] = value
        # one frame buffer, grab-when-empty: the frame waiting in it was exposed before this
        # change, so the next capture() would return it; it has to be dropped
        self.discard = max(self.discard, 1)

    def apply(self, settings):
        """Apply neutral settings; returns the settings really used (neutral units). Re-inits
        the camera when the framesize needs a larger JPEG buffer than the running init made."""
        validate(settings)
        used = {}
        w = settings.get("width", _DEFAULT["width"])
        h = settings.get("height", _DEFAULT["height"])
        size = framesize_for(w, h)
        if self.on and self.needs_start(settings):
            self.stop()
        if not self.on and not self.start(settings):
            raise CaptureError(self.status)
        self._set("framesize", size)
        used["width"] = w
        used["height"] = h
        q = _quality(settings.get("jpeg_quality", _DEFAULT["jpeg_quality"]))
        self._set("quality", q)
        used["jpeg_quality"] = _neutral_quality(q)
        for name in ("brightness", "contrast", "saturation"):
            lvl = _level(settings.get(name, 0))
            self._set(name, lvl)
            used[name] = lvl * 50
        self._set("mirror", 1 if settings.get("hflip") else 0)
        self._set("flip", 1 if settings.get("vflip") else 0)
        used["hflip"] = bool(settings.get("hflip"))
        used["vflip"] = bool(settings.get("vflip"))
        effect = settings.get("effect", 1)
        self._set("speffect", getattr(camera, _EFFECTS[effect]))
        used["effect"] = effect
        wb = settings.get("white_balance", 1)
        self._set("whitebalance", getattr(camera, _WB[wb]))
        used["white_balance"] = wb
        used["warmup_frames"] = settings.get("warmup_frames", _DEFAULT["warmup_frames"])
        return used

    def capture(self):
        """One JPEG taken with the settings last applied: frames exposed before a start
        (warm-up) or before a settings change are dropped first. Raises CaptureError when the
        driver gives no frame."""
        while self.discard:
            if not _drop_one():
                raise CaptureError("no frame from the camera (timeout or FB-OVF)")
            self.discard -= 1
            gc.collect()  # a UXGA frame is ~380 KB: free it before the next one is allocated
        jpeg = camera.capture()
        if jpeg is False:
            raise CaptureError("no frame from the camera (timeout or FB-OVF)")
        return jpeg


def _drop_one():
    """Grab a frame and let it go: it only lives in this call's frame, so nothing keeps the
    ~380 KB block referenced when the next frame needs it."""
    return camera.capture() is not False


def _axp_lift_usb_limit():
    """T-Camera Mini: clear the AXP's VBUS current-limit bits (register 0x30), as the driver's
    README does before camera.init; with the limit on, the sensor's start current trips it."""
    import machine

    i2c = machine.SoftI2C(scl=machine.Pin(22), sda=machine.Pin(21))
    reg = i2c.readfrom_mem(AXP_ADDR, AXP_IPS_SET, 1)[0]
    i2c.writeto_mem(AXP_ADDR, AXP_IPS_SET, bytes([reg & 0xFC]))
