"""Host version of the ``camera`` module of lemariva's micropython-camera-driver (OV2640).

Same functions, constants and value ranges as the C module; ``capture()`` returns real JPEG
files the harness put in ``<state>/camera/<W>x<H>/`` (round robin; any size when no folder for
the current framesize exists). ``faults.json`` ``{"camera_init": n}`` fails the next n inits
the way a loose ribbon cable does; ``{"brownout": n}`` makes the next n inits brown the chip out
(reset with RTC memory kept), as a weak battery does under the camera's inrush current.
"""

import os

import _hostflash as _flash

JPEG = 4
YUV422 = 1
GRAYSCALE = 2
RGB565 = 0
DRAM = 0
PSRAM = 1
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

_PIN_ARGS = (
    "d0",
    "d1",
    "d2",
    "d3",
    "d4",
    "d5",
    "d6",
    "d7",
    "vsync",
    "href",
    "pclk",
    "pwdn",
    "reset",
    "xclk",
    "siod",
    "sioc",
)

_state = {"on": False, "framesize": FRAME_UXGA, "quality": 12, "captures": 0}


def init(
    id,
    format=JPEG,
    framesize=FRAME_UXGA,
    quality=12,
    fb_location=DRAM,
    xclk_freq=XCLK_20MHz,
    **pins,
):
    for name in pins:
        if name not in _PIN_ARGS and name != "fb_size":
            raise TypeError("unexpected keyword argument '%s'" % name)
    if format != JPEG:
        raise ValueError("only JPEG is simulated")
    if _state["on"]:
        raise OSError("Camera already initialized")
    if _flash.take_fault("brownout"):
        # the sensor's inrush current dips the supply: the chip resets, RTC memory survives
        _flash.write_json("power.json", {"cause": "brownout"})
        os.system("kill -9 $PPID")
    if _flash.take_fault("camera_init"):
        return False  # the C module returns False when esp_camera_init fails
    _state["on"] = True
    framesize_(framesize)
    quality_(quality)
    return True


def deinit():
    _state["on"] = False
    return True


def _check_on():
    if not _state["on"]:
        raise OSError("Camera not initialized")


def framesize_(size):
    if size not in SIZES:
        raise ValueError("framesize out of range")
    _state["framesize"] = size


def framesize(size):
    _check_on()
    framesize_(size)


def quality_(q):
    if not 10 <= q <= 63:
        raise ValueError("quality must be 10..63")
    _state["quality"] = q


def quality(q):
    _check_on()
    quality_(q)


def _range2(name, v):
    _check_on()
    if not -2 <= v <= 2:
        raise ValueError("%s must be -2..2" % name)
    _state[name] = v


def brightness(v):
    _range2("brightness", v)


def contrast(v):
    _range2("contrast", v)


def saturation(v):
    _range2("saturation", v)


def speffect(v):
    _check_on()
    if not EFFECT_NONE <= v <= EFFECT_RETRO:
        raise ValueError("effect out of range")
    _state["effect"] = v


def whitebalance(v):
    _check_on()
    if not WB_NONE <= v <= WB_HOME:
        raise ValueError("white balance out of range")
    _state["wb"] = v


def flip(v):
    _check_on()
    _state["flip"] = 1 if v else 0


def mirror(v):
    _check_on()
    _state["mirror"] = 1 if v else 0


def capture():
    _check_on()
    w, h = SIZES[_state["framesize"]]
    folder = _flash.path("camera", "%dx%d" % (w, h))
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        names = []
    if not names:
        folder = _flash.path("camera", "any")
        names = sorted(os.listdir(folder))
    n = _state["captures"]
    _state["captures"] = n + 1
    counter = _flash.read_json("camera_counter.json", 0)
    _flash.write_json("camera_counter.json", counter + 1)
    path = folder + "/" + names[counter % len(names)]
    size = os.stat(path)[6]
    with open(path, "rb") as f:
        # one allocation of the frame's size, as the driver's mp_obj_new_bytes(fb->buf, fb->len)
        return f.read(size)
