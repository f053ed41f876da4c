"""The camera: board pin profiles, neutral CameraSettings -> esp32-camera calls, capture.

Settings arrive in device-neutral units (common.proto CameraSettings) and are mapped onto the
driver's ranges (quality 63..10, brightness/contrast/saturation -2..2); ``apply`` returns the
values really used, in neutral units, for the frame metadata.
"""

import gc

import camera
import cfg

_DEFAULT = cfg.DEFAULTS["camera"]  # what a setting the desired config leaves out falls back to

# Pin profiles of lemariva's micropython-camera-driver README; "ai-thinker" is the driver default.
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
    },
}

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


class Camera:
    def __init__(self, board="ai-thinker", pins=None):
        self.board = board
        self.pins = pins if pins is not None else BOARDS.get(board, {})
        self.on = False
        self.status = "off"

    def start(self):
        """Init the sensor with frame buffers in PSRAM; False (status set) when it fails."""
        if self.on:
            return True
        try:
            ok = camera.init(0, format=camera.JPEG, fb_location=camera.PSRAM, **self.pins)
        except Exception as e:  # the driver raises on a second init or bad pins
            self.status = "init_failed: %s" % e
            return False
        if ok is False:
            self.status = "init_failed"
            return False
        self.on = True
        self.status = "ok"
        return True

    def stop(self):
        if self.on:
            camera.deinit()
            self.on = False

    def apply(self, settings):
        """Apply neutral settings; returns the settings really used (neutral units)."""
        validate(settings)
        used = {}
        w = settings.get("width", _DEFAULT["width"])
        h = settings.get("height", _DEFAULT["height"])
        camera.framesize(framesize_for(w, h))
        used["width"] = w
        used["height"] = h
        q = _quality(settings.get("jpeg_quality", _DEFAULT["jpeg_quality"]))
        camera.quality(q)
        used["jpeg_quality"] = _neutral_quality(q)
        for name in ("brightness", "contrast", "saturation"):
            lvl = _level(settings.get(name, 0))
            getattr(camera, name)(lvl)
            used[name] = lvl * 50
        camera.mirror(1 if settings.get("hflip") else 0)
        camera.flip(1 if settings.get("vflip") else 0)
        used["hflip"] = bool(settings.get("hflip"))
        used["vflip"] = bool(settings.get("vflip"))
        effect = settings.get("effect", 1)
        camera.speffect(getattr(camera, _EFFECTS[effect]))
        used["effect"] = effect
        wb = settings.get("white_balance", 1)
        camera.whitebalance(getattr(camera, _WB[wb]))
        used["white_balance"] = wb
        used["warmup_frames"] = settings.get("warmup_frames", _DEFAULT["warmup_frames"])
        return used

    def capture(self, warmup=0):
        """Discard ``warmup`` frames (exposure settles after wake), return one JPEG."""
        for _ in range(warmup):
            camera.capture()
            gc.collect()  # a UXGA frame is ~380 KB: free it before the next one is allocated
        return camera.capture()
