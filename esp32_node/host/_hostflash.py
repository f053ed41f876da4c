"""The simulated device's persistent "flash" and power state (host port only, MicroPython).

One directory per device (``$CAMFLEET_ESP32_STATE``) holds what survives a reset on a real
ESP32, in files the CPython harness (esp32_node/tools/hostdevice.py) reads and writes too:

- ``nvs/<namespace>.json``: committed NVS entries ``{key: ["i", int] | ["b", hex]}``;
- ``flash/<label>.bin``: partition contents; ``partitions.csv``: the table (firmware/);
- ``otadata.json``: ``[[seq, state], [seq, state]]`` as the two otadata sectors;
- ``rtc.bin``: RTC slow memory (survives deep sleep and soft reset, not power loss);
- ``boot.json``: written when the "chip" goes down on purpose (deep sleep, reset, watchdog) and
  read by the next boot; its absence means the power was cut (the harness killed us);
- ``wake.json``: what woke the chip from deep sleep (set by the harness: timer, ext0, ...);
- ``faults.json``: fault injection (camera init, Wi-Fi, broker, NVS full), decremented as used;
- ``fs/``: the node's filesystem (current directory of the process).

The "bootloader" runs once per process, on first import of this module: it decides the reset
cause and the running app slot (rolling back an image that was never marked valid).
"""

import json
import os
import sys

STATE = os.getenv("CAMFLEET_ESP32_STATE") or "."

OTA_NEW = 0
OTA_PENDING_VERIFY = 1
OTA_VALID = 2
OTA_INVALID = 3
OTA_ABORTED = 4
OTA_UNDEFINED = 0xFFFFFFFF


def path(*parts):
    return "/".join((STATE,) + parts)


def exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def read_json(name, default):
    try:
        with open(path(name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write_json(name, value):
    """Write atomically (temp + rename), as NVS and otadata writes are atomic on the chip."""
    tmp = path(name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.rename(tmp, path(name))


def remove(name):
    try:
        os.remove(path(name))
    except OSError:
        pass


def take_fault(name):
    """True (and count it down) when the harness asked for fault ``name``."""
    faults = read_json("faults.json", {})
    n = faults.get(name, 0)
    if not n:
        return False
    if n > 0:
        faults[name] = n - 1
        write_json("faults.json", faults)
    return True


def fault_value(name, default=None):
    return read_json("faults.json", {}).get(name, default)


def partitions():
    """[(label, type, subtype, offset, size)] from partitions.csv (ESP-IDF CSV format)."""
    rows = []
    with open(path("partitions.csv")) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if not line:
                continue
            cols = [c.strip() for c in line.split(",")]
            rows.append((cols[0], cols[1], cols[2], _num(cols[3]), _num(cols[4])))
    return rows


def _num(text):
    text = text.strip().upper()
    if text.endswith("K"):
        return int(text[:-1]) * 1024
    if text.endswith("M"):
        return int(text[:-1]) * 1024 * 1024
    return int(text, 0)


def app_slots():
    return [r[0] for r in partitions() if r[1] == "app" and r[2].startswith("ota_")]


def go_down(cause, **extra):
    """The chip stops on purpose: record why for the next boot, then end the process."""
    record = {"cause": cause}
    record.update(extra)
    write_json("boot.json", record)
    sys.stdout.flush() if hasattr(sys.stdout, "flush") else None
    sys.exit(0)


def _bootloader():
    last = read_json("boot.json", None)
    remove("boot.json")
    if last is None:
        cause = read_json("power.json", {}).get("cause", "power_on")
        remove("power.json")
    else:
        cause = last["cause"]
    if cause in ("power_on",):
        remove("rtc.bin")  # RTC slow memory does not survive a power cut
    slots = app_slots()
    data = read_json("otadata.json", None)
    running = slots[0]
    if data:
        order = sorted(range(len(data)), key=lambda i: -data[i][0])
        for i in order:
            seq, state = data[i]
            if seq == 0 or seq == OTA_UNDEFINED:
                continue
            if state in (OTA_INVALID, OTA_ABORTED):
                continue
            if state == OTA_PENDING_VERIFY:
                # booted once and never marked valid: the bootloader rolls it back
                data[i][1] = OTA_ABORTED
                continue
            if state == OTA_NEW:
                data[i][1] = OTA_PENDING_VERIFY
            running = slots[(seq - 1) % len(slots)]
            break
        write_json("otadata.json", data)
    return cause, (last or {}), running


BOOT_CAUSE, LAST_DOWN, RUNNING_SLOT = _bootloader()
