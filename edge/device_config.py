"""The agent's effective DeviceConfig: config file, then desired config, then SetConfig overlay.

Layers merge field by field (proto3 presence); repeated fields are replaced, not appended. A new
desired version clears the SetConfig overlay: the controller's desired config is the full
merged truth, a SetConfig only a change on top of it until the next version.
:func:`validate` refuses a config the agent cannot run, with one line naming the field.
"""

from __future__ import annotations

from camfleet.edge.cameras.base import Camera
from camfleet.edge.cameras.settings import SettingsError
from camfleet.edge.config import EdgeConfig
from camfleet.edge.schedule import Schedule, check_cron
from camfleet.proto.chunking import MIN_MAX_PAYLOAD
from camfleet.proto.v1 import config_pb2


def from_file(config: EdgeConfig) -> config_pb2.DeviceConfig:
    """The config file's values as a DeviceConfig (the bottom layer)."""
    dc = config_pb2.DeviceConfig()
    dc.camera.CopyFrom(config.camera.settings)
    s = config.schedule
    if s.interval_s and float(s.interval_s).is_integer():
        dc.schedule.interval_s = int(s.interval_s)
    if s.cron:
        dc.schedule.cron = s.cron
    if s.burst_count != 1:
        dc.schedule.burst_count = s.burst_count
    if s.burst_interval_ms:
        dc.schedule.burst_interval_ms = s.burst_interval_ms
    if float(config.agent.telemetry_interval_s).is_integer():
        dc.telemetry_interval_s = int(config.agent.telemetry_interval_s)
    dc.max_payload = config.broker.max_payload
    dc.spool_max_frames = config.spool.max_frames
    dc.spool_max_bytes = config.spool.max_bytes
    return dc


def merge(*layers: config_pb2.DeviceConfig) -> config_pb2.DeviceConfig:
    result = config_pb2.DeviceConfig()
    for layer in layers:
        result.MergeFrom(layer)
        if layer.schedule.daily_times_s:
            del result.schedule.daily_times_s[:]
            result.schedule.daily_times_s.extend(layer.schedule.daily_times_s)
        if layer.sleep.ext1_pins:
            del result.sleep.ext1_pins[:]
            result.sleep.ext1_pins.extend(layer.sleep.ext1_pins)
    return result


def validate(dc: config_pb2.DeviceConfig, camera: Camera, max_burst: int) -> None:
    """Raise ValueError (one line, naming the field) when the agent cannot run ``dc``."""
    try:
        camera.validate(dc.camera)
    except SettingsError as exc:
        raise ValueError(str(exc)) from None
    s = dc.schedule
    if s.HasField("cron") and s.cron:
        check_cron(s.cron)
        if s.HasField("interval_s") and s.interval_s:
            raise ValueError("schedule: give interval_s or cron, not both")
    if s.daily_times_s and any(t >= 86400 for t in s.daily_times_s):
        raise ValueError("schedule.daily_times_s: values must be below 86400")
    if s.HasField("burst_count") and not 1 <= s.burst_count <= max_burst:
        raise ValueError(f"schedule.burst_count={s.burst_count} is outside 1..{max_burst}")
    if dc.HasField("max_payload") and dc.max_payload < MIN_MAX_PAYLOAD:
        raise ValueError(f"max_payload={dc.max_payload} is below {MIN_MAX_PAYLOAD}")
    if dc.HasField("spool_max_frames") and dc.spool_max_frames < 1:
        raise ValueError("spool_max_frames must be >= 1")
    if dc.HasField("spool_max_bytes") and dc.spool_max_bytes < 1024:
        raise ValueError("spool_max_bytes must be >= 1024")


def schedule_of(
    effective: config_pb2.DeviceConfig, remote: config_pb2.DeviceConfig, file_schedule: Schedule
) -> Schedule:
    """The local schedule to run: the remote one when the controller set any, else the file's."""
    if not remote.HasField("schedule"):
        return file_schedule
    s = effective.schedule
    return Schedule(
        interval_s=float(s.interval_s),
        cron=s.cron,
        burst_count=s.burst_count or 1,
        burst_interval_ms=s.burst_interval_ms,
        daily_times_s=tuple(sorted(s.daily_times_s)),
    )
