"""The agent's config file (TOML) loaded into small typed, validated value classes.

Every mistake is one :class:`~camfleet.errors.UserError` line naming the file and the key, e.g.
``edge.toml: camera.jpeg_quality = 120: camera setting jpeg_quality=120 is outside 1..100``.
Unknown keys are errors too (a typo must not be silently ignored). docs/edge.md lists every key
with its default; edge/edge.example.toml is a commented example.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from camfleet.edge.cameras import check_backend
from camfleet.edge.cameras.settings import SettingsError, from_dict
from camfleet.edge.jpeg import ENCODERS
from camfleet.errors import UserError
from camfleet.mqtt_url import BrokerUrl
from camfleet.proto.chunking import MIN_MAX_PAYLOAD
from camfleet.proto.codec import DEFAULT_MAX_PAYLOAD
from camfleet.proto.errors import ContractError
from camfleet.proto.topics import DEFAULT_ROOT, validate_device_id, validate_group, validate_root
from camfleet.proto.v1 import common_pb2

DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"


def default_state_dir(device_id: str) -> Path:
    """Where an agent keeps its state when the config names no ``agent.state_dir``: the user's
    state directory (XDG), never next to the config file, which may sit in a source tree."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "camfleet" / "edge" / device_id


@dataclass(frozen=True)
class DeviceSection:
    id: str
    board: str = ""
    groups: tuple[str, ...] = ()
    location: dict[str, Any] | None = None  # {"lat":, "lon":, "name":} for EXIF and metadata
    firmware_version: str = ""
    #: Per-device secret (camfleet device add): receipts, commands and desired config must
    #: carry an HMAC-SHA256 with it. Empty: nothing is checked (development brokers).
    key: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class BrokerSection:
    url: BrokerUrl
    root: str = DEFAULT_ROOT
    client_id: str = ""  # default: "camfleet-edge-<device id>" (stable: persistent session)
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_payload: int = DEFAULT_MAX_PAYLOAD
    inflight: int = 16  # QoS 1 publishes awaiting PUBACK before the spool sender waits
    ca_file: Path | None = None  # mqtts:// against a private CA (camfleet broker init's ca.pem)
    #: A client certificate + key as the broker identity (``camfleet device add --cert``).
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class CameraSection:
    backend: str = "synthetic"
    settings: common_pb2.CameraSettings = field(default_factory=common_pb2.CameraSettings)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FramesSection:
    exif: bool = True
    preview_max_side: int = 0  # 0 = no preview copy
    latest_jpeg: bool = False  # publish the latest JPEG (preview if any) retained, raw
    latest_jpeg_prefix: str = "camfleet/jpeg"
    encoder: str = "auto"


@dataclass(frozen=True)
class SpoolSection:
    dir: Path
    max_frames: int = 10_000
    max_bytes: int = 512 * 1024 * 1024
    fsync: bool = True
    resend_after_s: float = 30.0  # unreceipted frames are sent again after this (backing off)


@dataclass(frozen=True)
class ScheduleSection:
    interval_s: float = 0.0  # 0 = off
    cron: str = ""  # 5-field cron, UTC
    burst_count: int = 1
    burst_interval_ms: int = 0


@dataclass(frozen=True)
class AgentSection:
    state_dir: Path
    telemetry_interval_s: float = 60.0
    allow_machine_reboot: bool = False
    max_burst: int = 100
    # Ed25519 release public key (base64 of the raw 32 bytes) that self-update bundles must be
    # signed with; "" = self-update off (every bundle refused).
    update_public_key: str = ""
    # Seconds a newly installed version has to connect, publish its birth and capture once.
    update_check_s: float = 120.0


@dataclass(frozen=True)
class EdgeConfig:
    device: DeviceSection
    broker: BrokerSection
    camera: CameraSection
    frames: FramesSection
    spool: SpoolSection
    schedule: ScheduleSection
    agent: AgentSection
    source: str = "<dict>"

    @property
    def client_id(self) -> str:
        return self.broker.client_id or f"camfleet-edge-{self.device.id}"


def load_config(path: str | Path) -> EdgeConfig:
    """Read and validate a TOML config file; UserError naming file and key on any problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    return config_from_dict(data, source=str(path), base_dir=path.resolve().parent)


def _device_key(device_t: _Table) -> bytes:
    text = device_t.get("key", str, default="")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        device_t.fail("key", "must be hexadecimal (64 digits, as camfleet device add writes it)")
    if text and len(key) < 16:
        device_t.fail("key", "must be at least 16 bytes (32 hex digits)")
    return key


def _optional_path(base: Path, text: str) -> Path | None:
    return base / text if text else None


def config_from_dict(
    data: dict[str, Any], source: str = "<dict>", base_dir: Path | None = None
) -> EdgeConfig:
    """Validate an already parsed config (the Python API for demos and tests)."""
    base = base_dir or Path.cwd()
    root = _Table(data, "", source)
    device_t = root.table("device", DeviceSection)
    broker_t = root.table("broker", BrokerSection)
    camera_t = root.table("camera", CameraSection)
    frames_t = root.table("frames", FramesSection)
    spool_t = root.table("spool", SpoolSection)
    schedule_t = root.table("schedule", ScheduleSection)
    agent_t = root.table("agent", AgentSection)
    root.done()

    device_id = device_t.get("id", str, required=True)
    _contract(device_t, "id", validate_device_id, device_id)
    groups = tuple(device_t.get("groups", list))
    for g in groups:
        _contract(device_t, "groups", validate_group, g)
    location = device_t.get("location", dict)
    if location is not None:
        extra = set(location) - {"lat", "lon", "name"}
        if extra:
            device_t.fail("location", f"unknown keys {sorted(extra)} (use lat, lon, name)")
        for k in ("lat", "lon"):
            if k in location and not isinstance(location[k], int | float):
                device_t.fail(f"location.{k}", "must be a number")
    device = DeviceSection(
        id=device_id,
        board=device_t.get("board", str),
        groups=groups,
        location=location,
        firmware_version=device_t.get("firmware_version", str),
        key=_device_key(device_t),
    )
    device_t.done()

    url_text = broker_t.get("url", str, default=DEFAULT_BROKER_URL)
    try:
        url = BrokerUrl.parse(url_text)
    except UserError as exc:
        broker_t.fail("url", str(exc))
    topic_root = broker_t.get("root", str)
    _contract(broker_t, "root", validate_root, topic_root)
    broker = BrokerSection(
        url=url,
        root=topic_root,
        client_id=broker_t.get("client_id", str),
        keepalive_s=broker_t.number("keepalive_s", low=5, high=3600, integer=True),
        reconnect_min_s=broker_t.number("reconnect_min_s", low=0.01, high=3600),
        reconnect_max_s=broker_t.number("reconnect_max_s", low=0.01, high=86400),
        max_payload=broker_t.number(
            "max_payload", low=MIN_MAX_PAYLOAD, high=256 * 1024**2, integer=True
        ),
        inflight=broker_t.number("inflight", low=1, high=1000, integer=True),
        ca_file=_optional_path(base, broker_t.get("ca_file", str, default="")),
        cert_file=_optional_path(base, broker_t.get("cert_file", str, default="")),
        key_file=_optional_path(base, broker_t.get("key_file", str, default="")),
    )
    if (broker.cert_file is None) != (broker.key_file is None):
        broker_t.fail("cert_file", "cert_file and key_file go together")
    if broker.cert_file is not None and not url.tls:
        broker_t.fail("cert_file", "a client certificate needs an mqtts:// url")
    if broker.reconnect_max_s < broker.reconnect_min_s:
        broker_t.fail("reconnect_max_s", "must be >= reconnect_min_s")
    broker_t.done()

    backend = camera_t.get("backend", str)
    try:
        check_backend(backend)
    except UserError as exc:
        camera_t.fail("backend", str(exc))
    options = camera_t.get("options", dict)
    extra = camera_t.get("extra", dict, default={})  # -> CameraSettings.backend map
    settings_values = {k: camera_t.pop(k) for k in list(camera_t.remaining())}
    if "backend" in settings_values:
        camera_t.fail("backend", "duplicate key")
    if extra:
        settings_values["backend"] = extra
    try:
        settings = from_dict(settings_values, where=camera_t.key(""))
    except SettingsError as exc:
        raise UserError(f"{source}: {exc}") from None
    camera = CameraSection(backend=backend, settings=settings, options=options)

    encoder = frames_t.get("encoder", str)
    if encoder not in ENCODERS:
        frames_t.fail("encoder", f"{encoder!r} is not one of {', '.join(ENCODERS)}")
    frames = FramesSection(
        exif=frames_t.get("exif", bool),
        preview_max_side=frames_t.number("preview_max_side", low=0, high=8192, integer=True),
        latest_jpeg=frames_t.get("latest_jpeg", bool),
        latest_jpeg_prefix=frames_t.get("latest_jpeg_prefix", str),
        encoder=encoder,
    )
    frames_t.done()

    state_text = agent_t.get("state_dir", str, default="")
    state_dir = base / state_text if state_text else default_state_dir(device_id)
    agent = AgentSection(
        state_dir=state_dir,
        telemetry_interval_s=agent_t.number("telemetry_interval_s", low=0, high=86400),
        allow_machine_reboot=agent_t.get("allow_machine_reboot", bool),
        max_burst=agent_t.number("max_burst", low=1, high=10_000, integer=True),
        update_public_key=agent_t.get("update_public_key", str),
        update_check_s=agent_t.number("update_check_s", low=1, high=3600),
    )
    if agent.update_public_key:
        from camfleet.edge.update import load_public_key

        try:
            load_public_key(agent.update_public_key)
        except ValueError as exc:
            agent_t.fail("update_public_key", str(exc))
    agent_t.done()

    spool = SpoolSection(
        dir=base / spool_t.get("dir", str, default=str(state_dir / "spool")),
        max_frames=spool_t.number("max_frames", low=1, high=10_000_000, integer=True),
        max_bytes=spool_t.size("max_bytes"),
        fsync=spool_t.get("fsync", bool),
        resend_after_s=spool_t.number("resend_after_s", low=0.1, high=86400),
    )
    spool_t.done()

    cron = schedule_t.get("cron", str)
    if cron:
        from camfleet.edge.schedule import check_cron

        try:
            check_cron(cron)
        except ValueError as exc:
            schedule_t.fail("cron", str(exc))
    schedule = ScheduleSection(
        interval_s=schedule_t.number("interval_s", low=0, high=366 * 86400),
        cron=cron,
        burst_count=schedule_t.number("burst_count", low=1, high=agent.max_burst, integer=True),
        burst_interval_ms=schedule_t.number(
            "burst_interval_ms", low=0, high=3_600_000, integer=True
        ),
    )
    if schedule.interval_s and schedule.cron:
        schedule_t.fail("cron", "give interval_s or cron, not both")
    if 0 < schedule.interval_s < 0.01:
        schedule_t.fail("interval_s", "must be 0 (off) or >= 0.01")
    schedule_t.done()

    return EdgeConfig(device, broker, camera, frames, spool, schedule, agent, source)


def _contract(table: _Table, key: str, check: Any, value: Any) -> None:
    try:
        check(value)
    except ContractError as exc:
        table.fail(key, exc.detail if hasattr(exc, "detail") else str(exc))


_SECTION: Any = object()  # "no default given here: use the section dataclass's default"
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


class _Table:
    """One TOML table being read: typed getters that fail with ``file: key: why``."""

    def __init__(self, data: Any, prefix: str, source: str, section: type | None = None) -> None:
        if not isinstance(data, dict):
            raise UserError(f"{source}: {prefix.rstrip('.') or 'config'} must be a table")
        self.data = dict(data)
        self.prefix = prefix
        self.source = source
        # The section's dataclass field defaults are the one place a default is written.
        self.defaults: dict[str, Any] = {}
        for f in fields(section) if section is not None else ():
            if f.default is not MISSING:
                self.defaults[f.name] = f.default
            elif f.default_factory is not MISSING:
                self.defaults[f.name] = f.default_factory

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}".rstrip(".")

    def fail(self, name: str, why: str) -> Any:
        raise UserError(f"{self.source}: {self.key(name)}: {why}")

    def table(self, name: str, section: type | None = None) -> _Table:
        value = self.data.pop(name, {})
        if not isinstance(value, dict):
            self.fail(name, "must be a table ([" + self.key(name) + "])")
        return _Table(value, f"{self.prefix}{name}.", self.source, section)

    def default(self, name: str, given: Any) -> Any:
        if given is not _SECTION:
            return given
        value = self.defaults[name]  # a KeyError here is a loader bug: no default for `name`
        if callable(value):
            value = value()
        # A tuple default (groups) reads as the list TOML would give.
        return list(value) if isinstance(value, tuple) else value

    def pop(self, name: str) -> Any:
        return self.data.pop(name)

    def remaining(self) -> list[str]:
        return list(self.data)

    def get(self, name: str, kind: type, *, default: Any = _SECTION, required: bool = False) -> Any:
        if name not in self.data:
            if required:
                self.fail(name, "is required")
            return self.default(name, default)
        value = self.data.pop(name)
        if kind is list and isinstance(value, list):
            return value
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            self.fail(name, f"must be {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}")
        return value

    def number(self, name: str, *, low: float, high: float, integer: bool = False) -> Any:
        if name not in self.data:
            return self.default(name, _SECTION)
        value = self.data.pop(name)
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            self.fail(name, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
        if not low <= value <= high:
            self.fail(name, f"{value} is outside {low:g}..{high:g}")
        return value

    def size(self, name: str) -> int:
        if name not in self.data:
            return int(self.default(name, _SECTION))
        value = self.data.pop(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str):
            m = _SIZE_RE.fullmatch(value)
            if m:
                unit = m.group(2).lower()
                scale = _UNITS[unit[:1]] if "i" not in unit else 1024 ** "bkmgt".index(unit[0])
                result = int(float(m.group(1)) * scale)
                if result > 0:
                    return result
        return int(self.fail(name, f"{value!r} is not a size (e.g. 536870912, '512MiB', '2GB')"))

    def done(self) -> None:
        if self.data:
            names = ", ".join(self.key(k) for k in sorted(self.data))
            raise UserError(f"{self.source}: unknown key {names}")


_KIND_NAMES = {str: "a string", bool: "true or false", dict: "a table", list: "a list"}
