# Type stub of the `camera` C module of lemariva's micropython-camera-driver (esp32-camera),
# which micropython-esp32-stubs does not cover. Signatures as in its modcamera.c / README.
JPEG: int
YUV422: int
GRAYSCALE: int
RGB565: int
DRAM: int
PSRAM: int
XCLK_10MHz: int
XCLK_20MHz: int
FRAME_96X96: int
FRAME_QQVGA: int
FRAME_QCIF: int
FRAME_HQVGA: int
FRAME_240X240: int
FRAME_QVGA: int
FRAME_CIF: int
FRAME_HVGA: int
FRAME_VGA: int
FRAME_SVGA: int
FRAME_XGA: int
FRAME_HD: int
FRAME_SXGA: int
FRAME_UXGA: int
FRAME_FHD: int
WB_NONE: int
WB_SUNNY: int
WB_CLOUDY: int
WB_OFFICE: int
WB_HOME: int
EFFECT_NONE: int
EFFECT_NEG: int
EFFECT_BW: int
EFFECT_RED: int
EFFECT_GREEN: int
EFFECT_BLUE: int
EFFECT_RETRO: int

def init(
    id: int,
    format: int = ...,
    framesize: int = ...,
    quality: int = ...,
    fb_location: int = ...,
    xclk_freq: int = ...,
    **pins: int,
) -> bool: ...
def deinit() -> bool: ...
def capture() -> bytes: ...
def framesize(size: int) -> None: ...
def quality(q: int) -> None: ...
def brightness(v: int) -> None: ...
def contrast(v: int) -> None: ...
def saturation(v: int) -> None: ...
def speffect(v: int) -> None: ...
def whitebalance(v: int) -> None: ...
def flip(v: int) -> None: ...
def mirror(v: int) -> None: ...
