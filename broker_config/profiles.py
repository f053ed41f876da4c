"""``camfleet broker init DIR --profile dev|prod``: a complete mosquitto configuration directory.

DIR/mosquitto.conf      the config (usable as is: ``mosquitto -c DIR/mosquitto.conf``)
DIR/camfleet-broker.json  what camfleet needs to find the broker again (profile, ports, root)
DIR/data/               persistence
prod only:
DIR/dynamic-security.json the dynsec plugin's identities and roles (rewritten by the broker)
DIR/secrets.json        passwords of the service identities (mode 0600)
DIR/tls/                ca.pem/ca.der (give to clients), ca.key, server.pem, server.key

``BrokerDir`` reads such a directory back; ``ConfiguredMosquitto`` runs mosquitto from it.
"""

from __future__ import annotations

import dataclasses
import getpass
import glob
import json
import os
import secrets
import socket
import tempfile
from pathlib import Path
from typing import Any

from camfleet.broker_config import dynsec, pki
from camfleet.dirlock import LockHeld, lock_file
from camfleet.errors import UserError
from camfleet.mosquitto import Mosquitto, base_config, free_port
from camfleet.mqtt_url import BrokerUrl
from camfleet.proto.topics import DEFAULT_ROOT, validate_root

PROFILES = ("dev", "prod")
SETTINGS = "camfleet-broker.json"
PLAIN_MARK = "# camfleet: plain MQTT listener (`broker run --port` replaces the next line)"
PLUGIN_GLOBS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",  # Debian / Ubuntu
    "/usr/lib/mosquitto_dynamic_security.so",  # eclipse-mosquitto image
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
# Where the eclipse-mosquitto image has the plugin (for configs written for docker-compose).
CONTAINER_PLUGIN = "/usr/lib/mosquitto_dynamic_security.so"


@dataclasses.dataclass
class Settings:
    profile: str
    root: str = DEFAULT_ROOT
    port: int = 1883
    tls_port: int | None = None
    #: TLS listener where a client certificate is the identity (its CN = the dynsec username);
    #: None in directories written before it existed (``device add --cert`` then refuses).
    cert_port: int | None = None
    websockets_port: int | None = None
    hosts: list[str] = dataclasses.field(default_factory=list)
    #: Written for a container that mounts the directory here (docker-compose.yml); None: for
    #: this machine.
    container: str | None = None
    jpeg_prefix: str = "camfleet/jpeg"
    ha_prefix: str = "homeassistant"


def find_plugin() -> str:
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise UserError(
        "mosquitto's dynamic security plugin (mosquitto_dynamic_security.so) was not found: "
        "install mosquitto 2.0 or later (Debian: apt-get install mosquitto)"
    )


def websockets_supported() -> bool:
    """Start this machine's mosquitto with a websockets listener and open a websocket on it.

    A mosquitto built without websockets (e.g. some distribution builds) either exits or runs
    without that listener; one built with them answers the upgrade with 101.
    """
    ws_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        probe = Mosquitto(Path(tmp), extra_config=f"listener {ws_port}\nprotocol websockets\n")
        try:
            probe.start()
        except RuntimeError:
            return False
        try:
            return _websocket_upgrade(ws_port)
        finally:
            probe.stop()


def _websocket_upgrade(port: int) -> bool:
    request = (
        "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(request.encode())
            return s.recv(64).startswith(b"HTTP/1.1 101")
    except OSError:
        return False


def listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def init_broker(
    folder: Path,
    profile: str,
    port: int = 1883,
    tls_port: int = 8883,
    websockets: str = "auto",
    websockets_port: int = 9001,
    hosts: tuple[str, ...] = (),
    root: str = DEFAULT_ROOT,
    force: bool = False,
    container: str | None = None,
    cert_port: int = 8884,
) -> list[str]:
    """Write the configuration; return what to tell the user, one line each.

    ``container``: the path where a container (the eclipse-mosquitto image of
    docker-compose.yml) mounts the directory; the config then names files there, the image's
    plugin, and a plain listener on the container's network instead of loopback.
    """
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}: use dev or prod")
    validate_root(root)
    folder = folder.resolve()
    if (folder / "mosquitto.conf").exists() and not force:
        raise UserError(
            f"{folder} already holds a broker configuration; choose another directory or pass "
            "--force (new identities: enrolled devices must be added again)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    # The broker's own lock (camfleet.mosquitto): --force must not swap the secrets, TLS keys
    # and dynamic-security file under a broker that runs from this directory.
    try:
        os.close(lock_file(folder / "mosquitto.lock", f"pid {os.getpid()}, broker init"))
    except LockHeld as held:
        raise UserError(
            f"a broker is running from {folder} ({held.holder}): stop it first, or choose "
            "another directory"
        ) from None
    (folder / "data").mkdir(exist_ok=True)
    settings = Settings(profile=profile, root=root, port=port, container=container)
    # Where mosquitto sees the directory, and where its plain listener binds.
    seen = Path(container) if container else folder
    plain = f"listener {port}" if container else f"listener {port} 127.0.0.1"
    header = [
        f"# camfleet broker, {profile.upper()} profile, written by `camfleet broker init`.",
        "# Files named here must be readable (dynamic-security.json, data/ writable) by the",
        "# user mosquitto runs as (as root it switches to `mosquitto` unless `user` is set).",
    ]
    body = [base_config(profile), f"persistence_location {seen}/data/", "log_dest stderr"]
    notes = [f"{profile} broker configuration written to {folder}/mosquitto.conf"]
    if profile == "dev":
        body += [PLAIN_MARK, plain]
        notes.append("DEV profile: anonymous clients allowed, loopback only; never expose it")
    else:
        body += _prod(
            folder,
            seen,
            plain,
            settings,
            (tls_port, cert_port),
            websockets,
            websockets_port,
            hosts,
            notes,
        )
    (folder / "mosquitto.conf").write_text("\n".join([*header, *body, ""]))
    (folder / SETTINGS).write_text(json.dumps(dataclasses.asdict(settings), indent=2) + "\n")
    if container:
        notes.append(f"run it: docker compose up (it mounts {folder} at {container})")
    else:
        notes.append(f"run it: camfleet broker run --config {folder}")
    return notes


def _prod(
    folder: Path,
    seen: Path,
    plain: str,
    settings: Settings,
    tls_ports: tuple[int, int],
    websockets: str,
    websockets_port: int,
    hosts: tuple[str, ...],
    notes: list[str],
) -> list[str]:
    plugin = CONTAINER_PLUGIN if settings.container else find_plugin()
    extra = ["mosquitto"] if settings.container else []  # the compose service's name
    names = list(dict.fromkeys(["localhost", "127.0.0.1", socket.gethostname(), *extra, *hosts]))
    tls = folder / "tls"
    tls.mkdir(exist_ok=True)
    pki.make_ca(tls)
    pki.issue(tls, "server", names[0], names, server=True)
    passwords = {name: secrets.token_urlsafe(24) for name in dynsec.SERVICES}
    _write_private(folder / "secrets.json", json.dumps(passwords, indent=2) + "\n")
    dyn = dynsec.initial_config(settings.root, passwords, settings.jpeg_prefix, settings.ha_prefix)
    (folder / "dynamic-security.json").write_text(json.dumps(dyn, indent=2) + "\n")
    tls_port, cert_port = tls_ports
    settings.tls_port = tls_port
    settings.cert_port = cert_port
    settings.hosts = names
    tls_lines = [
        f"cafile {seen}/tls/ca.pem",
        f"certfile {seen}/tls/server.pem",
        f"keyfile {seen}/tls/server.key",
        "tls_version tlsv1.2",
    ]
    lines = [
        f"plugin {plugin}",
        f"plugin_opt_config_file {seen}/dynamic-security.json",
        PLAIN_MARK,
        plain,
        "max_connections 100",
        "# MQTT over TLS for devices, dashboards and Home Assistant on other machines.",
        f"listener {tls_port}",
        "max_connections 1000",
        *tls_lines,
        "# MQTT over TLS where the client certificate is the identity (`camfleet device add",
        "# --cert`): its CN is the dynamic-security username, so the identity's role applies; no",
        "# password is asked. A certificate cannot be un-issued: `device rm` deletes the identity",
        "# (each certificate has a CN of its own, never reused); the plugin grants that CN",
        "# nothing from then on (docs/security.md).",
        f"listener {cert_port}",
        "max_connections 1000",
        *tls_lines,
        "require_certificate true",
        "use_identity_as_username true",
        "# Nothing asks the plugin at connect time on this listener, so nothing checks a pinned",
        "# client id: the CN becomes the client id, so no certificate can take over (and empty)",
        "# another identity's persistent session.",
        "use_username_as_clientid true",
    ]
    if websockets == "auto":
        # The eclipse-mosquitto image serves websockets; this machine's mosquitto is asked.
        websockets = "on" if settings.container or websockets_supported() else "off"
        if websockets == "off":
            notes.append(
                "websockets: this mosquitto does not serve them; no websockets listener written"
            )
    if websockets == "on":
        settings.websockets_port = websockets_port
        lines += [
            "# MQTT over secure websockets (browsers).",
            f"listener {websockets_port}",
            "protocol websockets",
            "max_connections 1000",
            *tls_lines,
        ]
    else:
        lines.append("# no websockets listener: this mosquitto build has no websockets support")
    notes += [
        f"TLS on port {tls_port} for {', '.join(names)}; clients need {tls}/ca.pem",
        f"TLS with client certificates (device add --cert) on port {cert_port}",
        f"service identities (controller, dashboard, homeassistant, admin): {folder}/secrets.json",
        f"controller broker URL: camfleet broker url --config {folder} --identity controller",
    ]
    return lines


@dataclasses.dataclass
class BrokerDir:
    """A directory written by ``init_broker``, read back."""

    path: Path
    settings: Settings

    @classmethod
    def open(cls, path: Path) -> BrokerDir:
        path = Path(path).resolve()
        try:
            raw: dict[str, Any] = json.loads((path / SETTINGS).read_text())
        except FileNotFoundError:
            raise UserError(
                f"{path} is not a broker directory (no {SETTINGS}): "
                f"run `camfleet broker init {path}` first"
            ) from None
        except ValueError as exc:
            raise UserError(f"{path / SETTINGS}: not valid JSON ({exc})") from None
        return cls(path, Settings(**raw))

    @property
    def ca_file(self) -> Path:
        return self.path / "tls" / "ca.pem"

    def password(self, identity: str) -> str:
        name = identity if identity.startswith("_") else f"_{identity}"
        if self.settings.profile != "prod":
            raise UserError(
                f"{self.path} is a {self.settings.profile} broker: it has no identities"
            )
        passwords: dict[str, str] = json.loads((self.path / "secrets.json").read_text())
        if name not in passwords:
            raise UserError(f"unknown identity {identity!r}: use one of {', '.join(passwords)}")
        return passwords[name]

    def url(
        self, identity: str | None = None, tls: bool = False, host: str = "127.0.0.1"
    ) -> BrokerUrl:
        """The broker's address for one of the service identities (plain listener on loopback,
        or the TLS listener)."""
        user = password = None
        if identity is not None and self.settings.profile == "prod":
            user = identity if identity.startswith("_") else f"_{identity}"
            password = self.password(identity)
        if tls:
            if self.settings.tls_port is None:
                raise UserError(f"{self.path} has no TLS listener (dev profile)")
            return BrokerUrl(host, self.settings.tls_port, True, user, password)
        return BrokerUrl(host, self.settings.port, False, user, password)


def url_with_password(u: BrokerUrl) -> str:
    """The URL as --broker options take it (``str(BrokerUrl)`` leaves the password out)."""
    auth = f"{u.username}:{u.password}@" if u.username else ""
    return f"{'mqtts' if u.tls else 'mqtt'}://{auth}{u.host}:{u.port}"


class ConfiguredMosquitto(Mosquitto):
    """mosquitto run from a ``broker init`` directory; ``port`` moves the plain listener.

    It writes DIR/run.conf (the config with the plain listener moved and ``user`` set to the
    current user, so a root run keeps access to the directory's files) and starts from that.
    """

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.broker_dir = BrokerDir.open(folder)
        if self.broker_dir.settings.container:
            raise UserError(
                f"{self.broker_dir.path} was written for a container (--container "
                f"{self.broker_dir.settings.container}): run it with docker compose"
            )
        super().__init__(self.broker_dir.path, port or self.broker_dir.settings.port)

    @property
    def config_path(self) -> Path:
        return self.workdir / "run.conf"

    def write_config(self) -> Path:
        lines = (self.workdir / "mosquitto.conf").read_text().splitlines()
        try:
            at = lines.index(PLAIN_MARK) + 1
        except ValueError:
            raise UserError(
                f"{self.workdir}/mosquitto.conf has no '{PLAIN_MARK}' line: "
                "it was not written by `camfleet broker init`"
            ) from None
        lines[at] = f"listener {self.port} 127.0.0.1"
        lines.append(f"user {getpass.getuser()}")
        self.config_path.write_text("\n".join([*lines, ""]))
        return self.config_path
