"""Host version of MicroPython's ``machine`` module for the ESP32 node (unix port only).

``deepsleep``/``reset`` end the process after recording why in the simulated flash, so the
harness starts main.py again on the same "flash" (as the chip would); the harness, not this
module, decides how long a sleep lasts (compressed time) and what wakes the node.
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
    return bytes(
        _flash.read_json("identity.json", {}).get("mac", "24:0a:c4:00:00:01").replace(":", "")[:12],
        "ascii",
    )


def freq(hz=None):
    return 240000000


def deepsleep(time_ms=0):
    import esp32

    _flash.go_down("deepsleep", sleep_ms=time_ms, armed=esp32.armed_wake_sources())


def lightsleep(time_ms=0):
    time.sleep_ms(time_ms)


def reset():
    _flash.go_down("soft")


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
