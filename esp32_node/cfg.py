"""The effective device configuration: built-in defaults, merged with desired/SetConfig dicts.

A config is a DeviceConfig dict (schemas.DEVICE_CONFIG). ``merge`` follows SetConfig's rule:
what the update sets wins, sub-messages merge field by field, lists are replaced, maps updated.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy only: MicroPython has no typing module
    from typing import Any  # noqa: F401  (used in type comments)

DEFAULTS = {  # type: dict[str, Any]
    "camera": {"width": 640, "height": 480, "jpeg_quality": 80, "warmup_frames": 1},
    "schedule": {
        "interval_s": 300,
        "burst_count": 1,
        "burst_interval_ms": 200,
        "motion_burst_count": 3,
    },
    "sleep": {"deep_sleep": True, "awake_window_s": 2, "max_sleep_s": 3600},
    "telemetry_interval_s": 0,
    "max_payload": 128 * 1024,
    "spool_max_frames": 16,
    "spool_max_bytes": 384 * 1024,
}

# Upper bound of any stay-awake request, so a forgotten maintenance flag cannot drain a battery.
MAX_STAY_AWAKE_S = 900


def merge(base, update):
    out = dict(base)
    for k in update:
        v = update[k]
        old = out.get(k)
        if isinstance(v, dict) and isinstance(old, dict):
            if k in ("backend", "extra"):
                m = dict(old)
                m.update(v)
                out[k] = m
            else:
                out[k] = merge(old, v)
        else:
            out[k] = v
    return out


def get(cfg, section, name, default=None):
    """cfg[section][name], else its built-in default (DEFAULTS, the one place defaults are
    written), else ``default`` (only for keys that have no built-in default)."""
    sub = cfg.get(section)
    if sub is not None and name in sub:
        return sub[name]
    return DEFAULTS.get(section, {}).get(name, default)


def top(cfg, name):
    """A top-level setting (max_payload, spool_max_frames, ...), else its built-in default."""
    return cfg[name] if name in cfg else DEFAULTS.get(name)
