"""Desired state: versioned per device, group defaults merged, published retained.

Layers, lowest first: each of the device's groups (alphabetical), then the device's own
overrides, then the capture schedule compiled from the scheduler for sleeping nodes. The merged
DeviceConfig gets a new version only when its bytes change, and is published retained on
``{root}/v1/{device}/desired``. The device answers ``reported`` (the version applied, or an
error); drift = desired version != reported version, or a reported error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from camfleet.controller import registry
from camfleet.controller.ingest.jobs import AfterCommit, Job
from camfleet.controller.storage.database import Database, Tx
from camfleet.proto import codec, topics
from camfleet.proto.v1 import config_pb2

log = logging.getLogger("camfleet.controller.desired")

#: Returns the schedule layer of a device (or None): supplied by the scheduler.
ScheduleLayer = Callable[[Tx, str], config_pb2.DeviceConfig | None]

_RANGES = {
    "jpeg_quality": (1, 100),
    "brightness": (-100, 100),
    "contrast": (-100, 100),
    "saturation": (-100, 100),
    "sharpness": (-100, 100),
}


def validate_config(cfg: config_pb2.DeviceConfig) -> list[str]:
    """Problems with a config a device would refuse; empty when it is acceptable."""
    problems = []
    cam = cfg.camera
    for name, (lo, hi) in _RANGES.items():
        if cam.HasField(name) and not lo <= getattr(cam, name) <= hi:  # type: ignore[arg-type]
            problems.append(f"camera.{name} must be within {lo}..{hi}")
    if cam.HasField("rotation") and cam.rotation not in (0, 90, 180, 270):
        problems.append("camera.rotation must be 0, 90, 180 or 270")
    for name in ("crop_x", "crop_y", "crop_w", "crop_h"):
        if cam.HasField(name) and not 0.0 <= getattr(cam, name) <= 1.0:  # type: ignore[arg-type]
            problems.append(f"camera.{name} must be within 0..1")
    if any(t >= 86400 for t in cfg.schedule.daily_times_s):
        problems.append("schedule.daily_times_s must be below 86400")
    if cfg.schedule.HasField("cron"):
        from croniter import croniter

        if not croniter.is_valid(cfg.schedule.cron):
            problems.append(f"schedule.cron {cfg.schedule.cron!r} is not a valid cron expression")
    if cfg.HasField("max_payload") and cfg.max_payload < 1024:
        problems.append("max_payload must be at least 1024")
    if cfg.sleep.HasField("ext0_level") and cfg.sleep.ext0_level not in (0, 1):
        problems.append("sleep.ext0_level must be 0 or 1")
    return problems


def merge_into(base: Message, over: Message) -> None:
    """Overlay ``over`` onto ``base``: set scalars replace, messages merge, repeated replace."""
    for field, value in over.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            getattr(base, field.name).update(value)
        elif field.is_repeated:
            base.ClearField(field.name)
            getattr(base, field.name).extend(value)
        elif field.message_type is not None:
            merge_into(getattr(base, field.name), value)
        else:
            setattr(base, field.name, value)


def to_json(cfg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(cfg, preserving_proto_field_name=True)


class DesiredState:
    def __init__(
        self,
        db: Database,
        publish: Callable[..., None],
        root: str = topics.DEFAULT_ROOT,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.db = db
        self.publish = publish
        self.root = root
        self.clock_ms = clock_ms
        self.schedule_layer: ScheduleLayer = lambda tx, device: None
        self._lock = threading.Lock()

    # --- layers -------------------------------------------------------------------------------

    def get_layer(self, tx: Tx, scope: str, name: str) -> config_pb2.DeviceConfig:
        cfg = config_pb2.DeviceConfig()
        row = tx.one(
            "SELECT config FROM desired_layers WHERE scope = ? AND name = ?", (scope, name)
        )
        if row is not None:
            cfg.ParseFromString(bytes(row["config"]))
        return cfg

    def set_layer(
        self, scope: str, name: str, cfg: config_pb2.DeviceConfig, merge: bool = True
    ) -> None:
        """Set (or merge into) a group's or device's layer; republish what changed."""
        assert scope in ("group", "device")
        with self.db.transaction() as tx:
            if merge:
                current = self.get_layer(tx, scope, name)
                merge_into(current, cfg)
                cfg = current
            tx.execute(
                "INSERT INTO desired_layers (scope, name, config, updated_ms) VALUES (?,?,?,?) "
                "ON CONFLICT (scope, name) DO UPDATE SET config = excluded.config, "
                "updated_ms = excluded.updated_ms",
                (scope, name, codec.encode(cfg), self.clock_ms()),
            )
            devices = [name] if scope == "device" else registry.members(tx, name)
        self.refresh(devices)

    # --- merge + publish ----------------------------------------------------------------------

    def effective(self, tx: Tx, device_id: str) -> config_pb2.DeviceConfig:
        cfg = config_pb2.DeviceConfig()
        for group in registry.groups_of(tx, device_id):
            merge_into(cfg, self.get_layer(tx, "group", group))
        merge_into(cfg, self.get_layer(tx, "device", device_id))
        schedule = self.schedule_layer(tx, device_id)
        if schedule is not None:
            merge_into(cfg, schedule)
        return cfg

    def refresh(self, device_ids: list[str]) -> list[str]:
        """Recompute the merged config of devices; bump + publish those that changed."""
        changed = []
        with self._lock, self.db.transaction() as tx:
            for device_id in device_ids:
                cfg = self.effective(tx, device_id)
                data = codec.encode(cfg)
                creds = tx.scalar(
                    "SELECT message FROM device_credentials WHERE device_id = ?", (device_id,)
                )
                creds = bytes(creds) if creds is not None else b""
                row = tx.one(
                    "SELECT version, config, credentials FROM device_desired WHERE device_id = ?",
                    (device_id,),
                )
                if (
                    row is not None
                    and bytes(row["config"]) == data
                    and bytes(row["credentials"] or b"") == creds
                ):
                    continue
                if row is None and not cfg.ListFields() and not creds:
                    continue  # nothing to say yet
                version = (row["version"] if row else 0) + 1
                tx.execute(
                    "INSERT INTO device_desired (device_id, version, config, credentials, "
                    "updated_ms) VALUES (?,?,?,?,?) ON CONFLICT (device_id) DO UPDATE SET "
                    "version = excluded.version, config = excluded.config, "
                    "credentials = excluded.credentials, updated_ms = excluded.updated_ms",
                    (device_id, version, data, creds, self.clock_ms()),
                )
                changed.append(device_id)
        for device_id in changed:
            self.publish_device(device_id)
        return changed

    def publish_device(self, device_id: str) -> None:
        with self.db.read() as tx:
            row = tx.one("SELECT * FROM device_desired WHERE device_id = ?", (device_id,))
        if row is None:
            return
        msg = config_pb2.Desired(version=row["version"], updated_at_ms=row["updated_ms"])
        msg.config.ParseFromString(bytes(row["config"]))
        if row["credentials"]:
            msg.credentials.ParseFromString(bytes(row["credentials"]))
        self.publish(
            topics.device_topic(device_id, topics.Kind.DESIRED, self.root),
            codec.encode(msg),
            qos=1,
            retain=True,
        )

    def publish_all(self) -> None:
        """Republish every retained desired (after a reconnect: the broker may have lost them)."""
        with self.db.read() as tx:
            ids = [r["device_id"] for r in tx.query("SELECT device_id FROM device_desired")]
        for device_id in ids:
            self.publish_device(device_id)

    def set_credentials(self, device_id: str, creds: config_pb2.BrokerCredentials) -> int:
        """Deliver new broker credentials (already sealed for the device) with its desired
        config; returns the desired version that carries them."""
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO device_credentials (device_id, message, updated_ms) VALUES (?,?,?) "
                "ON CONFLICT (device_id) DO UPDATE SET message = excluded.message, "
                "updated_ms = excluded.updated_ms",
                (device_id, codec.encode(creds), self.clock_ms()),
            )
        self.refresh([device_id])
        with self.db.read() as tx:
            return int(
                tx.scalar("SELECT version FROM device_desired WHERE device_id = ?", (device_id,))
            )

    # --- reported (applied by the writer) -----------------------------------------------------

    def apply_reported(self, tx: Tx, job: Job) -> AfterCommit | None:
        rep = job.message
        assert isinstance(rep, config_pb2.Reported)
        registry.touch(tx, job.device_id, job.received_ms)
        tx.execute(
            "INSERT INTO device_desired (device_id, version, config, updated_ms, "
            "reported_version, reported_error, reported_ms, reported_config) "
            "VALUES (?, 0, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
            "reported_version = excluded.reported_version, "
            "reported_error = excluded.reported_error, reported_ms = excluded.reported_ms, "
            "reported_config = excluded.reported_config",
            (
                job.device_id,
                b"",
                job.received_ms,
                rep.version,
                rep.error,
                job.received_ms,
                codec.encode(rep.config),
            ),
        )
        return None

    def status(self, tx: Tx, device_id: str) -> dict[str, Any]:
        row = tx.one("SELECT * FROM device_desired WHERE device_id = ?", (device_id,))
        desired = config_pb2.DeviceConfig()
        reported = config_pb2.DeviceConfig()
        if row is not None:
            desired.ParseFromString(bytes(row["config"] or b""))
            reported.ParseFromString(bytes(row["reported_config"] or b""))
        version = row["version"] if row else 0
        reported_version = row["reported_version"] if row else 0
        error = row["reported_error"] if row else ""
        return {
            "device_id": device_id,
            "version": version,
            "desired": to_json(desired),
            "overrides": to_json(self.get_layer(tx, "device", device_id)),
            "reported_version": reported_version,
            "reported": to_json(reported),
            "reported_error": error or None,
            "drift": bool(version and (reported_version != version or error)),
        }
