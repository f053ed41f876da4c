"""Host version of the ``camera`` module of lemariva's micropython-camera-driver (OV2640).

Same functions, keyword arguments, defaults and constants as the driver's ``src/modcamera.c``
on esp32-camera v2.0.5, and the behaviours of that pair that decide whether a node works:

- ``init(0, ...)`` takes only keyword arguments after the id; the defaults are the driver's
  (framesize VGA, quality 12, xclk 10 MHz, one frame buffer, frame buffer in DRAM); a failed
  ``esp_camera_init`` raises ``OSError("Camera Init Failed")``.
- The JPEG frame buffer is sized once, at init, for the init framesize (width x height / 5,
  esp32-camera's cam_hal.c). A frame larger than that is dropped by the driver ("FB-OVF") and
  ``capture()`` returns ``False`` after esp_camera_fb_get's timeout, as it does for any failed
  grab. In DRAM only framesizes up to CIF fit (driver README): larger ones fail init.
- One frame buffer, CAMERA_GRAB_WHEN_EMPTY: the driver refills the buffer as soon as a frame is
  returned, so the frame ``capture()`` gives was exposed with the settings in force at the
  previous ``capture()`` (or init), not the ones set since.
- Sensor calls before init return ``False`` (esp_camera_sensor_get() is NULL), as the driver's.

``capture()`` returns real JPEG files the harness put in ``<state>/camera/<W>x<H>/`` (round
robin; ``camera/any/`` when no folder exists for the frame's size). When the harness created
``<state>/camera_frames.log`` (tests only: it grows by a line a frame), each frame appends its
sha256 and the settings it was exposed with, so a test can tell a stale frame from a fresh one.
Each init writes its arguments to ``camera_init.json``.

``faults.json``: ``{"camera_init": n}`` fails the next n inits (a loose ribbon cable),
``{"capture_fail": n}`` makes the next n grabs time out, ``{"brownout": n}`` browns the chip out
at init (reset with RTC memory kept), as a weak battery does under the camera's inrush current.
A board with an AXP PMU (``i2c.json`` has address 52) fails init until its USB current limit
is cleared, as the T-Camera Mini does.
"""

import binascii
import hashlib
import json
import os

import _hostflash as _flash

# esp32-camera's pixformat_t, framesize_t, camera_fb_location_t; modcamera.h's WB/EFFECT/XCLK
RGB565 = 0
YUV422 = 1
GRAYSCALE = 3
JPEG = 4
PSRAM = 0
DRAM = 1
XCLK_10MHz = 10000000
XCLK_20MHz = 20000000

FRAME_96X96 = 0
FRAME_QQVGA = 1
FRAME_QCIF = 2
FRAME_HQVGA = 3
FRAME_240X240 = 4
FRAME_QVGA = 5
FRAME_CIF = 6
FRAME_HVGA = 7
FRAME_VGA = 8
FRAME_SVGA = 9
FRAME_XGA = 10
FRAME_HD = 11
FRAME_SXGA = 12
FRAME_UXGA = 13
FRAME_FHD = 14
FRAME_P_HD = 15
FRAME_P_3MP = 16
FRAME_QXGA = 17
FRAME_QHD = 18
FRAME_WQXGA = 19
FRAME_P_FHD = 20
FRAME_QSXGA = 21

SIZES = {
    FRAME_96X96: (96, 96),
    FRAME_QQVGA: (160, 120),
    FRAME_QCIF: (176, 144),
    FRAME_HQVGA: (240, 176),
    FRAME_240X240: (240, 240),
    FRAME_QVGA: (320, 240),
    FRAME_CIF: (400, 296),
    FRAME_HVGA: (480, 320),
    FRAME_VGA: (640, 480),
    FRAME_SVGA: (800, 600),
    FRAME_XGA: (1024, 768),
    FRAME_HD: (1280, 720),
    FRAME_SXGA: (1280, 1024),
    FRAME_UXGA: (1600, 1200),
    FRAME_FHD: (1920, 1080),
    FRAME_P_HD: (720, 1280),
    FRAME_P_3MP: (864, 1536),
    FRAME_QXGA: (2048, 1536),
    FRAME_QHD: (2560, 1440),
    FRAME_WQXGA: (2560, 1600),
    FRAME_P_FHD: (1080, 1920),
    FRAME_QSXGA: (2560, 1920),
}

WB_NONE = 0
WB_SUNNY = 1
WB_CLOUDY = 2
WB_OFFICE = 3
WB_HOME = 4

EFFECT_NONE = 0
EFFECT_NEG = 1
EFFECT_BW = 2
EFFECT_RED = 3
EFFECT_GREEN = 4
EFFECT_BLUE = 5
EFFECT_RETRO = 6

# modcamera.c's keyword arguments and defaults (the ESP32 WROVER-KIT pins of modcamera.h)
_DEFAULTS = {
    "format": JPEG,
    "framesize": FRAME_VGA,
    "quality": 12,
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
    "xclk_freq": XCLK_10MHz,
    "fb_size": 1,
    "fb_location": DRAM,
}
_PIN_NAMES = (
    "d0 d1 d2 d3 d4 d5 d6 d7 vsync href pclk pwdn reset xclk siod sioc".split()  # noqa: SIM905
)

# Frame settings the sensor applies to the next exposure (what a stale frame still carries).
_SENSOR = ("framesize", "quality", "brightness", "contrast", "saturation", "effect", "wb",
           "flip", "mirror")  # fmt: skip

_state = {"on": False}
_exposed = {}  # the settings the frame now waiting in the single buffer was exposed with


def init(*args, **kw):
    if len(args) != 1:
        raise TypeError("function takes 1 positional arguments but %d were given" % len(args))
    for name in kw:
        if name not in _DEFAULTS:
            raise TypeError("unexpected keyword argument '%s'" % name)
    cfg = dict(_DEFAULTS)
    cfg.update(kw)
    for name in cfg:
        if not isinstance(cfg[name], int):
            raise TypeError("can't convert %s to int" % type(cfg[name]).__name__)
    if cfg["format"] not in (JPEG, YUV422, GRAYSCALE, RGB565):
        raise ValueError("Image format is not valid")
    if cfg["framesize"] not in SIZES:
        raise ValueError("Image framesize is not valid")
    if cfg["xclk_freq"] not in (XCLK_10MHz, XCLK_20MHz):
        raise ValueError("xclk frequency is not valid")
    if cfg["format"] != JPEG:
        raise ValueError("the host camera only makes JPEG frames")
    if _flash.take_fault("brownout"):
        # the sensor's inrush current dips the supply: the chip resets, RTC memory survives
        _flash.write_json("power.json", {"cause": "brownout"})
        os.system("kill -9 $PPID")
    w, h = SIZES[cfg["framesize"]]
    # T-Camera Mini: with the AXP's USB current limit (register 0x30, bits 1..0) still on, the
    # sensor's start current trips it and init fails (driver README)
    axp = _flash.read_json("i2c.json", {}).get("52")
    limited = axp is not None and axp.get("48", 0) & 3
    fb_bytes = w * h // 5  # cam_hal.c: JPEG recv_size = width * height / 5
    if (
        _state["on"]  # esp_camera_init on a running camera fails (call deinit first)
        or _flash.take_fault("camera_init")
        or limited
        or cfg["fb_size"] < 1
        or (cfg["fb_location"] == DRAM and cfg["framesize"] > FRAME_CIF)
        or cfg["fb_location"] not in (DRAM, PSRAM)
    ):
        raise OSError("Camera Init Failed")
    _state.clear()
    _state.update(
        on=True,
        init=cfg,
        fb_bytes=fb_bytes,
        framesize=cfg["framesize"],
        quality=cfg["quality"],
        brightness=0,
        contrast=0,
        saturation=0,
        effect=EFFECT_NONE,
        wb=WB_NONE,
        flip=0,
        mirror=0,
    )
    _expose()
    _flash.write_json("camera_init.json", cfg)  # what the last init asked for (tests read it)
    return True


def init_config():
    """Host only: the keyword arguments of the running init (None when off), for tests."""
    return dict(_state["init"]) if _state.get("on") else None


def deinit():
    _state["on"] = False
    return True


def _expose():
    _exposed.clear()
    for k in _SENSOR:
        _exposed[k] = _state[k]


def _set(name, value):
    if not _state.get("on"):
        return False  # esp_camera_sensor_get() is NULL: the driver returns False
    _state[name] = value
    return None


def framesize(size):
    if size not in SIZES:
        raise ValueError("Image framesize is not valid")
    return _set("framesize", size)


def quality(q):
    if not 10 <= q <= 63:  # the OV2640's JPEG quality scale (lower is better)
        raise ValueError("quality must be 10..63")
    return _set("quality", q)


def _range2(name, v):
    if not -2 <= v <= 2:
        raise ValueError("%s must be -2..2" % name)
    return _set(name, v)


def brightness(v):
    return _range2("brightness", v)


def contrast(v):
    return _range2("contrast", v)


def saturation(v):
    return _range2("saturation", v)


def speffect(v):
    if not EFFECT_NONE <= v <= EFFECT_RETRO:
        raise ValueError("effect out of range")
    return _set("effect", v)


def whitebalance(v):
    if not WB_NONE <= v <= WB_HOME:
        raise ValueError("white balance out of range")
    return _set("wb", v)


def flip(v):
    return _set("flip", 1 if v else 0)


def mirror(v):
    return _set("mirror", 1 if v else 0)


def capture():
    if not _state.get("on"):
        return False  # esp_camera_fb_get() without a camera: NULL
    frame = dict(_exposed)  # the buffer holds a frame exposed before any change since
    _expose()  # returning the buffer starts the next exposure with today's settings
    if _flash.take_fault("capture_fail"):
        return False  # "Camera Capture Failed": no frame within the driver's timeout
    w, h = SIZES[frame["framesize"]]
    folder = _flash.path("camera", "%dx%d" % (w, h))
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        names = []
    if not names:
        folder = _flash.path("camera", "any")
        names = sorted(os.listdir(folder))
    counter = _flash.read_json("camera_counter.json", 0)
    _flash.write_json("camera_counter.json", counter + 1)
    path = folder + "/" + names[counter % len(names)]
    size = os.stat(path)[6]
    if size > _state["fb_bytes"]:
        return False  # FB-OVF: the frame does not fit the buffer sized at init; dropped
    import gc

    gc.collect()  # host only: the bookkeeping above must not split the block the frame needs
    with open(path, "rb") as f:
        # one allocation of the frame's size, as the driver's mp_obj_new_bytes(fb->buf, fb->len)
        data = f.read(size)
    log = _flash.path("camera_frames.log")
    if _flash.exists(log):
        frame["sha256"] = binascii.hexlify(hashlib.sha256(data).digest()).decode()
        with open(log, "a") as f:
            f.write(json.dumps(frame) + "\n")
    return data
