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


def cause(rtc):
    """WakeCause of this boot. A power-on reset with RTC memory intact and the camera-on marker
    set is a brownout: the ESP32 port reports both as PWRON_RESET, but only a brownout keeps RTC
    memory."""
    rc = machine.reset_cause()
    if rc == machine.DEEPSLEEP_RESET:
        wr = machine.wake_reason()
        if wr == machine.EXT0_WAKE:
            return WAKE_EXT0
        if wr == machine.EXT1_WAKE:
            return WAKE_EXT1
        if wr == machine.TOUCHPAD_WAKE:
            return WAKE_TOUCH
        if wr == machine.ULP_WAKE:
            return WAKE_ULP
        return WAKE_TIMER
    if rc == machine.WDT_RESET:
        return WAKE_WATCHDOG
    if rc == machine.SOFT_RESET:
        return WAKE_SOFT_RESET
    if rtc is not None and rtc.get("cam"):
        return WAKE_BROWNOUT
    return WAKE_POWER_ON


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
