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
FRAME_P_HD: int
FRAME_P_3MP: int
FRAME_QXGA: int
FRAME_QHD: int
FRAME_WQXGA: int
FRAME_P_FHD: int
FRAME_QSXGA: int
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

# Everything after the id is keyword-only (MP_ARG_KW_ONLY); a failed esp_camera_init raises
# OSError("Camera Init Failed"). capture() returns False when no frame came (timeout, FB-OVF);
# the sensor setters return False before init.
def init(
    id: int,
    *,
    format: int = ...,
    framesize: int = ...,
    quality: int = ...,
    d0: int = ...,
    d1: int = ...,
    d2: int = ...,
    d3: int = ...,
    d4: int = ...,
    d5: int = ...,
    d6: int = ...,
    d7: int = ...,
    vsync: int = ...,
    href: int = ...,
    pclk: int = ...,
    pwdn: int = ...,
    reset: int = ...,
    xclk: int = ...,
    siod: int = ...,
    sioc: int = ...,
    xclk_freq: int = ...,
    fb_size: int = ...,
    fb_location: int = ...,
) -> bool: ...
def deinit() -> bool: ...
def capture() -> bytes | bool: ...
def framesize(size: int) -> bool | None: ...
def quality(q: int) -> bool | None: ...
def brightness(v: int) -> bool | None: ...
def contrast(v: int) -> bool | None: ...
def saturation(v: int) -> bool | None: ...
def speffect(v: int) -> bool | None: ...
def whitebalance(v: int) -> bool | None: ...
def flip(v: int) -> bool | None: ...
def mirror(v: int) -> bool | None: ...
