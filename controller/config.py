"""Controller settings: defaults < config file (TOML) < environment (CAMFLEET_*) < command line.

Every field of :class:`ControllerConfig` can be set in the config file under ``[controller]``
(same name), in the environment as ``CAMFLEET_<NAME>`` (upper case), and most on the command
line as ``--<name-with-dashes>``. Retention policies live in the file only (``[retention]``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camfleet.errors import UserError


@dataclass
class RetentionPolicy:
    """Limits for one device (or each device of a group, or every device by default)."""

    max_age_days: float | None = None
    max_count: int | None = None
    max_bytes: int | None = None


@dataclass
class ControllerConfig:
    broker: str = "mqtt://127.0.0.1:1883"
    data: Path = Path("camfleet-data")
    http: str = "127.0.0.1:8080"
    #: Registry database: "" = SQLite in DATA; or sqlite:///PATH, postgresql://user@host/db.
    database: str = ""
    root: str = "camfleet"
    #: Shared-subscription group for frames and chunks, for several controllers on one broker.
    #: Off by default: mosquitto 2.0.11 does not restore shared subscriptions from persistence,
    #: so frames published after a broker restart and before the controller re-subscribes would
    #: reach no session (devices' spool replay then recovers them, but later). See docs.
    share_group: str = ""
    #: MQTT protocol: "auto" (5 if the broker speaks it, else 3.1.1), "5" or "3.1.1".
    mqtt_protocol: str = "auto"
    #: MQTT 5 Receive Maximum: deliveries the broker may have un-acknowledged at a time.
    receive_maximum: int = 1000
    #: MQTT client id; default "camfleet-controller-<instance id>" (instance id kept in DATA).
    client_id: str = ""
    #: Bearer token for write endpoints; generated into DATA/api-token when empty.
    token: str = ""
    home_assistant: bool = True
    ha_prefix: str = "homeassistant"
    jpeg_prefix: str = "camfleet/jpeg"
    #: Topics the controller maintains for Home Assistant (availability, telemetry, button).
    ha_state_prefix: str = "camfleet/ha"
    batch_max: int = 512
    #: Decode and SHA-256-check whole frames on a thread of their own (off the network thread).
    decode_thread: bool = True
    #: Threads writing a batch's frame files (overlaps filesystem journal waits).
    file_threads: int = 1
    chunk_timeout_s: float = 120.0
    telemetry_history: int = 1000
    event_history: int = 1000
    #: Finished commands kept: the newest ``command_history`` per device, none older than
    #: ``command_history_days`` (0 = no limit of that kind); pending ones are always kept.
    command_history: int = 1000
    command_history_days: float = 30.0
    command_expiry_s: float = 86400.0
    command_resend_s: float = 30.0
    tick_s: float = 1.0
    misfire_grace_s: float = 300.0
    overdue_grace_s: float = 120.0
    retention_interval_s: float = 300.0
    #: Whole-store disk budget in bytes (0 = none); oldest frames of the fleet go first.
    disk_budget_bytes: int = 0
    #: Low-space watermarks of the data directory's filesystem: under ``disk_low_bytes`` free,
    #: frames are refused (acknowledged without a receipt: the device keeps them); from
    #: ``disk_resume_bytes`` free they are accepted again.
    disk_low_bytes: int = 128 * 1024 * 1024
    disk_resume_bytes: int = 192 * 1024 * 1024
    #: Incomplete chunked frames held per device (its oldest is evicted for a new one).
    chunk_sets_per_device: int = 8
    log_level: str = "info"
    #: PEM file of the firmware release *public* key (Secure Boot V2 RSA-3072); the controller
    #: refuses every image it cannot verify with it. The private key never comes here.
    ota_public_key: str = ""
    #: Edge-agent bundles: base64 of the raw 32-byte Ed25519 release *public* key (the agents'
    #: ``[agent] update_public_key``); without it every bundle upload is refused.
    ota_edge_public_key: str = ""
    #: Devices served OTA blocks at a time, and blocks published per second (all devices): a
    #: rollout must not starve frame ingest.
    ota_max_transfers: int = 8
    ota_blocks_per_s: float = 200.0
    retention_default: RetentionPolicy = field(default_factory=RetentionPolicy)
    retention_groups: dict[str, RetentionPolicy] = field(default_factory=dict)
    retention_devices: dict[str, RetentionPolicy] = field(default_factory=dict)

    @property
    def http_host_port(self) -> tuple[str, int]:
        host, _, port = self.http.rpartition(":")
        try:
            return host or "127.0.0.1", int(port)
        except ValueError:
            raise UserError(f"invalid --http {self.http!r}: use HOST:PORT") from None


SCALAR_FIELDS = [
    f for f in dataclasses.fields(ControllerConfig) if not f.name.startswith("retention_")
]


def _convert(name: str, kind: Any, value: Any) -> Any:
    kind = {"Path": Path, "bool": bool, "int": int, "float": float, "str": str}.get(
        kind if isinstance(kind, str) else kind.__name__, str
    )
    if kind is bool and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise UserError(f"{name}: expected a boolean, got {value!r}")
        return lowered in ("1", "true", "yes", "on")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}: expected {kind.__name__}, got {value!r}") from None


def _policy(name: str, data: Any) -> RetentionPolicy:
    if not isinstance(data, dict):
        raise UserError(f"{name}: expected a table")
    known = {f.name for f in dataclasses.fields(RetentionPolicy)}
    unknown = set(data) - known
    if unknown:
        raise UserError(f"{name}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    return RetentionPolicy(**data)


def load(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> ControllerConfig:
    cfg = ControllerConfig()
    env = os.environ if environ is None else environ
    if config_file is None and env.get("CAMFLEET_CONFIG"):
        config_file = Path(env["CAMFLEET_CONFIG"])
    if config_file is not None:
        try:
            doc = tomllib.loads(Path(config_file).read_text())
        except OSError as exc:
            raise UserError(f"cannot read config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"config file {config_file}: {exc}") from None
        section = doc.get("controller", {})
        names = {f.name: f for f in SCALAR_FIELDS}
        # Errors name the file: a setting may come from it, the environment or an option.
        where = f"config file {config_file}: "
        for key, value in section.items():
            if key not in names:
                raise UserError(f"{where}unknown setting {key!r}")
            setattr(cfg, key, _convert(where + key, names[key].type, value))
        retention = doc.get("retention", {})
        if "default" in retention:
            cfg.retention_default = _policy(where + "retention.default", retention["default"])
        for group, data in retention.get("groups", {}).items():
            cfg.retention_groups[group] = _policy(f"{where}retention.groups.{group}", data)
        for device, data in retention.get("devices", {}).items():
            cfg.retention_devices[device] = _policy(f"{where}retention.devices.{device}", data)
    for f in SCALAR_FIELDS:
        value = env.get(f"CAMFLEET_{f.name.upper()}")
        if value is not None:
            setattr(cfg, f.name, _convert(f"CAMFLEET_{f.name.upper()}", f.type, value))
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(cfg, key, value)
    cfg.data = Path(cfg.data)
    return cfg
