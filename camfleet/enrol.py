"""Enrolment and revocation of devices on a prod broker (``camfleet device add/rm``).

Enrolling a device means, in this order: a broker identity in the dynamic-security plugin (a
random password, its client id pinned, a role naming only its own topics), a per-device secret
key in the controller's registry (what the controller signs with), and the device's
configuration (edge.toml for Linux boards; the NVS settings, CSV and image for ESP32 boards) in
an output folder readable only by the caller; and the device's row in the registry (state
``enrolled`` until it is first heard from). With ``cert`` the identity is a client certificate
issued from the broker's CA instead of a password. Revocation deletes every identity of the
device (the plugin drops the live connection at once) and the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from pathlib import Path

from camfleet.atomic import atomic_write
from camfleet.broker_config import dynsec, pki
from camfleet.broker_config.admin import DynsecAdmin
from camfleet.broker_config.profiles import BrokerDir
from camfleet.controller import registry
from camfleet.controller.device_keys import DeviceKeys
from camfleet.errors import UserError
from camfleet.proto.errors import ContractError
from camfleet.proto.topics import validate_device_id, validate_group

# board -> the node's NVS `board` value (ESP32) or None (a Linux board running the edge agent)
BOARDS: dict[str, str | None] = {
    "esp32-cam": "ai-thinker",
    "m5camera-b": "m5camera-b",
    "t-camera-mini": "t-camera-mini",
    "pi": None,
    "maix": None,
    "usb": None,
}


def checked_device_id(device_id: str) -> str:
    """The one device-id check of the CLI (the API and the broker identities use the same
    ``validate_device_id``): a bad id is one line naming the rule."""
    try:
        return validate_device_id(device_id)
    except ContractError as exc:
        raise UserError(exc.detail) from None


def is_esp32(board: str) -> bool:
    return BOARDS[board] is not None


def client_id_for(device_id: str, board: str) -> str:
    """The MQTT client id the device's software uses (the node: its id; the edge agent's
    default: camfleet-edge-<id>); the broker accepts the identity under no other."""
    return device_id if is_esp32(board) else f"camfleet-edge-{device_id}"


@dataclasses.dataclass
class Enrolment:
    device_id: str
    board: str
    #: The broker identity: the device id (password), or ``<id>.<tag>`` (certificate's CN).
    username: str
    password: str | None  # None: a client certificate is the identity
    key: bytes
    files: list[Path]

    def as_json(self) -> dict[str, object]:
        """What ``device add --json`` prints: no secret (they are in the files)."""
        return {
            "device_id": self.device_id,
            "board": self.board,
            "identity": self.username,
            "credential": "password" if self.password is not None else "certificate",
            "registered": True,
            "files": [str(f) for f in self.files],
        }


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _write_private(path: Path, data: bytes) -> Path:
    """A secret file, mode 0600 from its creation (camfleet.atomic: a re-add never leaves half)."""
    atomic_write(path, data, mode=0o600)
    return path


def add_device(
    broker: BrokerDir,
    keys: DeviceKeys,
    device_id: str,
    groups: tuple[str, ...],
    board: str,
    out: Path,
    broker_host: str | None = None,
    wifi: tuple[str, str] = ("", ""),
    cert: bool = False,
) -> Enrolment:
    device_id = checked_device_id(device_id)
    for g in groups:
        try:
            validate_group(g)
        except ContractError as exc:
            raise UserError(exc.detail) from None
    if board not in BOARDS:
        raise UserError(f"unknown board {board!r}: use one of {', '.join(BOARDS)}")
    if broker.settings.profile != "prod":
        raise UserError(f"{broker.path} is a dev broker: anyone may connect, nothing to enrol")
    if cert and is_esp32(board):
        raise UserError(
            f"--cert: the ESP32 node authenticates with a password only (no client certificate "
            f"support in its MQTT client yet); enrol {board} boards without --cert"
        )
    if cert and broker.settings.cert_port is None:
        raise UserError(
            f"--cert: {broker.path} has no client-certificate listener (written by an older "
            "camfleet): run `camfleet broker init --force` to add it"
        )
    root = broker.settings.root
    folder = out / device_id
    password: str | None = None
    with DynsecAdmin(broker.url("admin")) as admin:
        # Re-adding replaces every identity of the device (a new password or certificate, a new
        # key): the old ones stop working.
        admin.run(
            dynsec.remove_device_commands(device_id, admin.usernames()), ignore=("not found",)
        )
        if cert:
            username = dynsec.tagged_username(device_id, secrets.token_hex(4))
            pki.issue(
                broker.path / "tls", "client", username, [], server=False, out=_private_dir(folder)
            )
            admin.run(dynsec.add_cert_device_commands(device_id, username, groups, root))
        else:
            username, password = device_id, secrets.token_urlsafe(24)
            admin.run(
                dynsec.add_device_commands(
                    device_id, password, client_id_for(device_id, board), groups, root
                )
            )
    key = keys.create(device_id)
    # The registry row (state "enrolled" until its first message) goes where the key went: the
    # controller's registry, written directly, so enrolling works whether or not the controller
    # runs, and a running one lists the device at once (it reads the registry per request).
    with keys.db.transaction() as tx:
        registry.enrol(tx, device_id, groups, board)
    host = broker_host or _default_host(broker)
    _private_dir(folder)
    if is_esp32(board):
        assert password is not None
        files = _esp32_files(broker, folder, device_id, groups, board, password, key, host, wifi)
    else:
        files = [_edge_toml(broker, folder, device_id, groups, board, password, key, host)]
        if cert:
            files += [folder / "client.pem", folder / "client.key"]
    return Enrolment(device_id, board, username, password, key, files)


def remove_device(broker: BrokerDir, keys: DeviceKeys, device_id: str) -> bool:
    """Revoke: True if the broker knew an identity of the device."""
    device_id = checked_device_id(device_id)
    with DynsecAdmin(broker.url("admin")) as admin:
        known = [u for u in admin.usernames() if dynsec.is_identity_of(device_id, u)]
        admin.run(dynsec.remove_device_commands(device_id, known), ignore=("not found",))
    keys.delete(device_id)
    return bool(known)


def _default_host(broker: BrokerDir) -> str:
    # The certificate's names: localhost, 127.0.0.1, this machine's name, then --host extras.
    names = broker.settings.hosts
    return names[-1] if len(names) > 2 else "127.0.0.1"


def _edge_toml(
    broker: BrokerDir,
    folder: Path,
    device_id: str,
    groups: tuple[str, ...],
    board: str,
    password: str | None,
    key: bytes,
    host: str,
) -> Path:
    ca = (broker.ca_file).read_bytes()
    (folder / "ca.pem").write_bytes(ca)
    if password is None:  # the client certificate is the identity, on its own listener
        broker_lines = [
            f'url = "mqtts://{host}:{broker.settings.cert_port}"',
            'ca_file = "ca.pem"',
            'cert_file = "client.pem"',
            'key_file = "client.key"',
        ]
    else:
        broker_lines = [
            f'url = "mqtts://{device_id}:{password}@{host}:{broker.settings.tls_port}"',
            'ca_file = "ca.pem"',
        ]
    lines = [
        f"# camfleet edge agent for {device_id}, written by `camfleet device add`.",
        "# It holds the device's broker credentials and secret key: keep it private (mode 0600).",
        "[device]",
        f"id = {json.dumps(device_id)}",
        f"board = {json.dumps(board)}",
        f"groups = {json.dumps(list(groups))}",
        f"key = {json.dumps(key.hex())}",
        "",
        "[broker]",
        *broker_lines,
        f"root = {json.dumps(broker.settings.root)}",
        "",
    ]
    return _write_private(folder / "edge.toml", "\n".join(lines).encode())


def esp32_settings(
    broker: BrokerDir,
    device_id: str,
    groups: tuple[str, ...],
    board: str,
    password: str,
    key: bytes,
    host: str,
    wifi: tuple[str, str],
) -> dict[str, int | str | bytes]:
    """The NVS keys of docs/esp32-node.md for an enrolled node."""
    assert broker.settings.tls_port is not None
    settings: dict[str, int | str | bytes] = {
        "device_id": device_id,
        "mqtt_host": host,
        "mqtt_port": broker.settings.tls_port,
        "mqtt_user": device_id,
        "mqtt_pass": password,
        "mqtt_tls": 1,
        "mqtt_ca": (broker.path / "tls" / "ca.der").read_bytes(),
        "root": broker.settings.root,
        "hmac_key": key,
        "board": str(BOARDS[board]),
    }
    if groups:
        settings["groups"] = ",".join(groups)
    if wifi[0]:
        settings["wifi_ssid"], settings["wifi_pass"] = wifi
    return settings


def _esp32_files(
    broker: BrokerDir,
    folder: Path,
    device_id: str,
    groups: tuple[str, ...],
    board: str,
    password: str,
    key: bytes,
    host: str,
    wifi: tuple[str, str],
) -> list[Path]:
    from camfleet.esp32_node.tools.provision import make_nvs_image, nvs_csv

    settings = esp32_settings(broker, device_id, groups, board, password, key, host, wifi)
    return [
        _write_private(folder / "nvs.csv", nvs_csv(settings).encode()),
        _write_private(folder / "nvs.bin", make_nvs_image(settings)),
    ]
