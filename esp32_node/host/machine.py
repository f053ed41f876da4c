"""Host version of MicroPython's ``machine`` module for the ESP32 node (unix port only).

``deepsleep``/``reset`` end the process after recording why in the simulated flash, so the
harness starts main.py again on the same "flash" (as the chip would); the harness, not this
module, decides how long a sleep lasts (compressed time) and what wakes the node.

As on the v1.22 ESP32 port: ``reset()`` is esp_restart(), which the next boot reports as
HARD_RESET (only ``soft_reset()`` gives SOFT_RESET); ``unique_id()`` is the 6-byte base MAC;
``Pin`` accepts only GPIOs the ESP32 has; ``TouchPad`` only the ten touch GPIOs. ``SoftI2C``
talks to the devices of ``<state>/i2c.json`` (``{"52": {"48": 99}}``: address -> register ->
value), where a board's PMU lives; ``hardware.json`` names what the board has.
"""

import os
import time

import _hostflash as _flash

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

PIN_WAKE = 2
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6

_WAKE_CODES = {
    "ext0": EXT0_WAKE,
    "ext1": EXT1_WAKE,
    "timer": TIMER_WAKE,
    "touch": TOUCHPAD_WAKE,
    "ulp": ULP_WAKE,
}
_RESET_CODES = {
    "power_on": PWRON_RESET,
    "brownout": PWRON_RESET,  # the ESP32 port reports a brownout as a power-on reset
    "deepsleep": DEEPSLEEP_RESET,
    "soft": SOFT_RESET,
    "hard": HARD_RESET,  # machine.reset() / esp_restart()
    "panic": HARD_RESET,  # a Guru Meditation reboots the same way
    "watchdog": WDT_RESET,
}
_RTC_MAX = 2048  # MICROPY_HW_RTC_USER_MEM_MAX on the ESP32 port


def reset_cause():
    return _RESET_CODES.get(_flash.BOOT_CAUSE, PWRON_RESET)


def wake_reason():
    if _flash.BOOT_CAUSE != "deepsleep":
        return 0
    wake = _flash.read_json("wake.json", {}).get("cause", "timer")
    return _WAKE_CODES.get(wake, TIMER_WAKE)


def unique_id():
    # esp_efuse_mac_get_default: the 6 raw bytes of the base MAC (not text)
    mac = _flash.read_json("identity.json", {}).get("mac", "24:0a:c4:00:00:01")
    return bytes(int(x, 16) for x in mac.split(":"))


def freq(hz=None):
    return 240000000


def deepsleep(time_ms=0):
    import esp32

    _flash.go_down("deepsleep", sleep_ms=time_ms, armed=esp32.armed_wake_sources())


def lightsleep(time_ms=0):
    time.sleep_ms(time_ms)


def reset():
    _flash.go_down("hard")


def soft_reset():
    _flash.go_down("soft")


def idle():
    pass


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    WAKE_LOW = 4
    WAKE_HIGH = 5
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        if not isinstance(id, int) or id not in _GPIOS:
            raise ValueError("invalid pin")
        self.id = id
        self._value = 0 if value is None else value

    def init(self, mode=-1, pull=-1, value=None):
        if value is not None:
            self._value = value

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = 1 if v else 0

    def on(self):
        self._value = 1

    def off(self):
        self._value = 0


# GPIOs of the ESP32 (20 and 24 and 28..31 do not exist)
_GPIOS = tuple(range(0, 20)) + (21, 22, 23, 25, 26, 27) + tuple(range(32, 40))
# machine_touchpad.c: the GPIO of each touch pad T0..T9
TOUCH_GPIOS = (4, 0, 2, 15, 13, 12, 14, 27, 33, 32)


class TouchPad:
    def __init__(self, pin):
        gpio = pin.id if isinstance(pin, Pin) else pin
        if gpio not in TOUCH_GPIOS:
            raise ValueError("invalid pin for touchpad")
        self.gpio = gpio
        self.threshold = 0

    def config(self, value):
        if not 0 <= value <= 0xFFFF:  # uint16_t in touch_pad_config
            raise ValueError("Touch pad error")
        self.threshold = value
        wired = _flash.read_json("touch.json", {})
        wired[str(self.gpio)] = value
        _flash.write_json("touch.json", wired)  # what deep sleep arms (esp32.wake_on_touch)

    def read(self):
        # untouched pads read high; a finger pulls the count down (the harness sets it)
        return int(_flash.fault_value("touch_%d" % self.gpio, 1000))


class SoftI2C:
    """Bit-banged I2C: reads and writes registers of the devices listed in i2c.json; any other
    address does not ACK (OSError ENODEV, as the port's)."""

    def __init__(self, scl, sda, freq=400000, timeout=50000):
        self.scl = scl
        self.sda = sda

    def _dev(self, addr):
        devices = _flash.read_json("i2c.json", {})
        if str(addr) not in devices:
            raise OSError(19)  # MP_ENODEV: no ACK
        return devices

    def readfrom_mem(self, addr, memaddr, nbytes):
        regs = self._dev(addr)[str(addr)]
        return bytes(regs.get(str(memaddr + i), 0) & 0xFF for i in range(nbytes))

    def writeto_mem(self, addr, memaddr, buf):
        devices = self._dev(addr)
        for i, b in enumerate(buf):
            devices[str(addr)][str(memaddr + i)] = b
        _flash.write_json("i2c.json", devices)


class _Mem32:
    """machine.mem32 over the two regions the node touches: RTC IO registers (mux of an RTC
    GPIO) and RTC slow memory (the ULP program's data). Anything else is refused here; on the
    chip a stray address is a crash."""

    _REGIONS = ((0x3FF48400, 0x3FF48800), (0x50000000, 0x50002000))

    def __init__(self):
        self.words = {}

    def _check(self, addr):
        if addr % 4 or not any(lo <= addr < hi for lo, hi in self._REGIONS):
            raise ValueError("host mem32: address 0x%x is not simulated" % addr)

    def __getitem__(self, addr):
        self._check(addr)
        return self.words.get(addr, 0)

    def __setitem__(self, addr, value):
        self._check(addr)
        self.words[addr] = value & 0xFFFFFFFF


mem32 = _Mem32()


class RTC:
    def memory(self, data=None):
        if data is None:
            try:
                with open(_flash.path("rtc.bin"), "rb") as f:
                    return f.read()
            except OSError:
                return b""
        if len(data) > _RTC_MAX:
            raise ValueError("buffer too long")
        with open(_flash.path("rtc.bin"), "wb") as f:
            f.write(data)

    def datetime(self, dt=None):
        return time.localtime()


class WDT:
    """Resets the "chip" (kills this process, recording a watchdog reset) if not fed in time."""

    def __init__(self, id=0, timeout=5000):
        import _thread

        self._timeout = timeout
        self._last = time.ticks_ms()
        _thread.start_new_thread(self._watch, ())

    def feed(self):
        self._last = time.ticks_ms()

    def _watch(self):
        while True:
            time.sleep_ms(50)
            if time.ticks_diff(time.ticks_ms(), self._last) > self._timeout:
                _flash.write_json("boot.json", {"cause": "watchdog"})
                os.system("kill -9 $PPID")
                return


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin, atten=None):
        self._pin = pin

    def read_uv(self):
        # a battery sense pin behind a 1:2 divider; the harness sets the battery voltage
        return int(_flash.fault_value("battery_mv", 4000)) * 500
