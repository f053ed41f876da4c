"""Why the node is awake, what it remembers in RTC memory, and when it should wake next.

RTC slow memory survives deep sleep and soft resets but not a power cut, so it holds what one
wake tells the next (the purpose of the timer, recent command ids, a "camera on" marker); NVS
holds what must survive a power cut (session number, config).
"""

import json
import time

import machine
from schemas import (
    WAKE_BROWNOUT,
    WAKE_EXT0,
    WAKE_EXT1,
    WAKE_POWER_ON,
    WAKE_SOFT_RESET,
    WAKE_TIMER,
    WAKE_TOUCH,
    WAKE_ULP,
    WAKE_WATCHDOG,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy only: MicroPython has no typing module
    from typing import Any  # noqa: F401  (used in type comments)

_MAGIC = "cf1"

NAMES = {
    WAKE_POWER_ON: "power_on",
    WAKE_TIMER: "timer",
    WAKE_EXT0: "ext0",
    WAKE_EXT1: "ext1",
    WAKE_ULP: "ulp",
    WAKE_TOUCH: "touch",
    WAKE_SOFT_RESET: "soft_reset",
    WAKE_WATCHDOG: "watchdog",
    WAKE_BROWNOUT: "brownout",
}


def load_rtc():
    """The dict the previous wake left in RTC memory, or None after a power cut."""
    try:
        raw = machine.RTC().memory()
        if raw:
            d = json.loads(raw)
            if d.get("m") == _MAGIC:
                return d
    except (ValueError, OSError):
        pass
    return None


def save_rtc(d):
    d["m"] = _MAGIC
    machine.RTC().memory(json.dumps(d).encode())


def classify(rtc):
    """(WakeCause, reset reason text) of this boot, for every reset cause the ESP32 port reports
    (v1.22 modmachine.c):

    - DEEPSLEEP_RESET: by ``wake_reason()``: EXT0, EXT1, TOUCHPAD, ULP; the timer otherwise.
    - WDT_RESET (interrupt, task or RTC watchdog): WATCHDOG.
    - SOFT_RESET (``machine.soft_reset()``, Ctrl-D): SOFT_RESET.
    - HARD_RESET: ``machine.reset()`` (esp_restart), a panic or an exception reset. The node
      sets ``rb`` in RTC memory before it resets itself (reboot command, OTA switch): that is a
      requested restart (SOFT_RESET: no capture). Without the mark it was a panic: POWER_ON.
    - PWRON_RESET: power-on or brownout (the port reports both alike). A brownout keeps RTC
      memory and finds the "camera starting" mark set; a power cut clears RTC memory.
    - 0 (SDIO or unknown reset): treated as a power-on.
    """
    rc = machine.reset_cause()
    if rc == machine.DEEPSLEEP_RESET:
        wr = machine.wake_reason()
        if wr == machine.EXT0_WAKE:
            return WAKE_EXT0, "ext0"
        if wr == machine.EXT1_WAKE:
            return WAKE_EXT1, "ext1"
        if wr == machine.TOUCHPAD_WAKE:
            return WAKE_TOUCH, "touch"
        if wr == machine.ULP_WAKE:
            return WAKE_ULP, "ulp"
        return WAKE_TIMER, "timer"
    if rc == machine.WDT_RESET:
        return WAKE_WATCHDOG, "watchdog"
    if rc == machine.SOFT_RESET:
        return WAKE_SOFT_RESET, "soft_reset"
    if rc == machine.HARD_RESET:
        if rtc is not None and rtc.get("rb"):
            return WAKE_SOFT_RESET, "reboot"
        return WAKE_POWER_ON, "panic"
    if rtc is not None and rtc.get("cam"):
        return WAKE_BROWNOUT, "brownout"
    if rc == machine.PWRON_RESET:
        return WAKE_POWER_ON, "power_on"
    return WAKE_POWER_ON, "unknown_reset"


def cause(rtc):
    """WakeCause of this boot (see classify)."""
    return classify(rtc)[0]


# Ports whose epoch is 2000-01-01 (older ESP32 builds) need this added to get Unix time.
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0


def now_ms():
    """Unix ms UTC, or 0 before the clock was set (after a power cut the RTC restarts at its
    epoch; deep sleep keeps it running)."""
    t = time.time() + _EPOCH_OFFSET
    if t < 1600000000:
        return 0
    return int(t * 1000)


def sync_clock(server):
    """Set the RTC by SNTP when it is not set yet (first wake after a power cut). Without it,
    frames carry captured_at_ms 0 and uptime only, and daily schedule times cannot be used."""
    if now_ms():
        return True
    try:
        import ntptime

        if server:
            ntptime.host = server
        ntptime.settime()
    except Exception:  # no ntptime module (unix port) or no answer: run without a clock
        return False
    return now_ms() != 0


def next_wake(cfg, now_s, interval_left_ms=None):
    """(sleep ms, purpose) until the next scheduled capture, bounded by max_sleep_s.

    ``interval_left_ms`` is what remains of the current capture interval (None = a whole one);
    daily times need the clock (``now_s`` 0 = unset). purpose is "capture" when the timer is for
    a capture slot, "check" when it only bounds the sleep (the wake captures nothing, takes its
    commands and sleeps again; the interval keeps counting down across such wakes).
    """
    sched = cfg.get("schedule") or {}
    sleep = cfg.get("sleep") or {}
    max_ms = sleep.get("max_sleep_s", 3600) * 1000
    best = None
    interval = sched.get("interval_s", 0)
    if interval:
        best = interval * 1000 if interval_left_ms is None else max(1000, interval_left_ms)
    times = sched.get("daily_times_s") or []
    if times and now_s:
        day = int(now_s) % 86400
        for t in times:
            d = ((t - day) % 86400 or 86400) * 1000
            if best is None or d < best:
                best = d
    if best is None or best > max_ms:
        return max_ms, "check"
    return best, "capture"


def interval_left(rtc, cause, interval_s):
    """What remains of the capture interval at this boot, from what the last wake recorded:
    a check wake subtracts the sleep it asked for (the timer is trusted: no clock needed); a
    capture slot or a power cut starts a whole interval; an early wake (PIR) leaves it as it was.
    """
    if not interval_s or "ileft" not in rtc:
        return None
    if cause == WAKE_TIMER:
        if rtc.get("due") == "capture":
            return None
        return rtc["ileft"] - rtc.get("slept", 0)
    return rtc["ileft"]


# GPIOs that can wake the chip from deep sleep (v1.22 modesp32.h RTC_VALID_EXT_PINS, ESP32)
RTC_GPIOS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
# machine_touchpad.c: the GPIO of each touch pad T0..T9
TOUCH_GPIOS = (4, 0, 2, 15, 13, 12, 14, 27, 33, 32)


def check_sources(sleep, camera_pins):
    """Why the wake sources of a SleepPolicy cannot be armed on this board, or None. Checked
    when a config is applied: on the chip, a bad pin only fails at deep sleep (ValueError in
    esp32.wake_on_*), after the config was already accepted."""
    import ulp_pir

    def pin_problem(what, pin, allowed):
        if pin not in allowed:
            return "%s: GPIO %d cannot do this (allowed: %s)" % (
                what,
                pin,
                ", ".join(str(p) for p in sorted(allowed)),
            )
        if pin in camera_pins:
            return "%s: GPIO %d is wired to the camera" % (what, pin)
        return None

    checks = []  # type: list[Any]
    if "ext0_pin" in sleep:
        checks.append(("sleep.ext0_pin", sleep["ext0_pin"], RTC_GPIOS))
    for p in sleep.get("ext1_pins") or []:
        checks.append(("sleep.ext1_pins", p, RTC_GPIOS))
    if "touch_pin" in sleep:
        checks.append(("sleep.touch_pin", sleep["touch_pin"], TOUCH_GPIOS))
        if not 0 < sleep.get("touch_threshold", 0) <= 0xFFFF:
            return "sleep.touch_threshold must be 1..65535 with a touch_pin"
    if "ulp_pin" in sleep:
        checks.append(("sleep.ulp_pin", sleep["ulp_pin"], tuple(ulp_pir.PINS)))
        if not 0 < sleep.get("ulp_pulses", 1) <= 0xFFFF:
            return "sleep.ulp_pulses must be 1..65535"
        if not 10 <= sleep.get("ulp_period_ms", 20) <= 60000:
            return "sleep.ulp_period_ms must be 10..60000"
    for what, pin, allowed in checks:
        problem = pin_problem(what, pin, allowed)
        if problem:
            return problem
    if "ext0_pin" in sleep and ("touch_pin" in sleep or "ulp_pin" in sleep):
        # modesp32.c: ext0 and the touch/ULP wakes share RTC IO resources ("no resources")
        return "sleep.ext0_pin cannot be combined with a touch or ULP wake: use ext1_pins"
    return None


def arm(sleep):
    """Arm every wake source the SleepPolicy names (validated by check_sources)."""
    import esp32

    if "ext0_pin" in sleep:
        esp32.wake_on_ext0(
            machine.Pin(sleep["ext0_pin"], machine.Pin.IN), sleep.get("ext0_level", 1)
        )
    if sleep.get("ext1_pins"):
        pins = [machine.Pin(p, machine.Pin.IN) for p in sleep["ext1_pins"]]
        level = esp32.WAKEUP_ANY_HIGH if sleep.get("ext1_level", 1) else esp32.WAKEUP_ALL_LOW
        esp32.wake_on_ext1(pins, level)
    if "touch_pin" in sleep:
        pad = machine.TouchPad(machine.Pin(sleep["touch_pin"]))
        pad.config(sleep["touch_threshold"])
        esp32.wake_on_touch(True)
    if "ulp_pin" in sleep:
        import ulp_pir

        ulp_pir.arm(sleep["ulp_pin"], sleep.get("ulp_pulses", 1), sleep.get("ulp_period_ms", 20))
