"""``camfleet device rotate ID``: new broker credentials, delivered before the old ones stop.

The dynamic-security plugin keeps one password per identity, so a rotation is a second identity
(``<id>.<tag>``: same role, same pinned client id) that overlaps with the first:

1. the new identity is created on the broker (both work from now on);
2. the controller puts it into the device's desired config, the password encrypted for the
   device (camfleet.proto.credentials; ``PUT /api/v1/devices/{id}/credentials``);
3. the device stores it, reconnects with it and reports it in use (``Reported.identity``);
4. then, and only then, every other identity of the device is deleted.

Step 4 waits for the device (``--wait``); a device that does not switch in time (asleep, off)
keeps both identities working, and ``rotate --finish`` completes the rotation later. A device
that cannot decrypt or is refused with the new identity keeps (or falls back to) the old one.
"""

from __future__ import annotations

import dataclasses
import queue
import secrets
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.api_client import Api
from camfleet.broker_config import dynsec
from camfleet.broker_config.admin import DynsecAdmin
from camfleet.broker_config.profiles import BrokerDir
from camfleet.enrol import checked_device_id
from camfleet.errors import UserError
from camfleet.proto import codec
from camfleet.proto.errors import ContractError
from camfleet.proto.topics import Kind, device_topic
from camfleet.proto.v1 import config_pb2


@dataclasses.dataclass
class Rotation:
    device_id: str
    identity: str  # the identity the device is to use (new, or the one --finish found in use)
    status: str  # "done": the others are deleted; "pending": both still work
    retired: list[str]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ReportedWatcher:
    """The device's ``reported`` topic, read as the read-only ``_dashboard`` identity: which
    broker identity does the device say it is connected with?"""

    def __init__(self, broker: BrokerDir, device_id: str) -> None:
        self.topic = device_topic(device_id, Kind.REPORTED, broker.settings.root)
        self.identities: queue.Queue[str] = queue.Queue()
        self._subscribed = threading.Event()
        url = broker.url("dashboard")
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"camfleet-rotate-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self.client.username_pw_set(url.username, url.password)
        self.client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        try:
            self.client.connect(url.host, url.port)
        except OSError as exc:
            raise UserError(f"cannot reach the broker at {url}: {exc}") from None
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise UserError(f"the broker at {url} did not confirm the subscription to {self.topic}")

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            rep = codec.decode_as(config_pb2.Reported, bytes(msg.payload)).message
        except ContractError:
            return  # not a report: nothing to learn from it
        assert isinstance(rep, config_pb2.Reported)
        if rep.identity:
            self.identities.put(rep.identity)

    def wait_for(self, wanted: set[str], timeout: float) -> str | None:
        """The first identity in ``wanted`` the device reports within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got = self.identities.get(timeout=left)
            except queue.Empty:
                break
            if got in wanted:
                return got
        return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _identities(admin: DynsecAdmin, device_id: str) -> list[str]:
    found = [u for u in admin.usernames() if dynsec.is_identity_of(device_id, u)]
    if not found:
        raise UserError(f"{device_id} has no identity on this broker: `camfleet device add` it")
    return found


def _retire(admin: DynsecAdmin, keep: str, identities: list[str]) -> list[str]:
    gone = [u for u in identities if u != keep]
    admin.run([{"command": "deleteClient", "username": u} for u in gone], ignore=("not found",))
    return gone


def create_identity(admin: DynsecAdmin, device_id: str, like: str) -> tuple[str, str]:
    """A new password identity ``<id>.<tag>`` with the device's role and the client id pinned
    on its identity ``like`` (the same persistent session): (username, password)."""
    current = admin.run([{"command": "getClient", "username": like}])
    client_id = current[0].get("data", {}).get("client", {}).get("clientid")
    username = dynsec.tagged_username(device_id, secrets.token_hex(4))
    password = secrets.token_urlsafe(24)
    create: dict[str, Any] = {
        "command": "createClient",
        "username": username,
        "password": password,
        "roles": [{"rolename": dynsec.device_role_name(device_id)}],
    }
    if client_id:
        create["clientid"] = client_id
    admin.run([create])
    return username, password


def rotate_device(broker: BrokerDir, api: Api, device_id: str, wait_s: float) -> Rotation:
    device_id = checked_device_id(device_id)
    if broker.settings.profile != "prod":
        raise UserError(f"{broker.path} is a dev broker: it has no identities to rotate")
    known = api.request("GET", f"/api/v1/devices/{device_id}", allow_missing=True)
    if known.status_code == 404:
        raise UserError(f"no device {device_id!r} is known to the controller at {api.base}")
    device = known.json()
    if "credentials" not in device.get("capabilities", []):
        raise UserError(
            f"{device_id} does not take new broker credentials over the air (its last birth "
            "does not announce `credentials`: a certificate identity, a device without a key, "
            "older software, or it never connected): enrol it again with `camfleet device add`"
        )
    with DynsecAdmin(broker.url("admin")) as admin:
        old = _identities(admin, device_id)
        username, password = create_identity(admin, device_id, old[0])
        # Listen before the delivery, so the device's answer cannot be missed.
        watcher = ReportedWatcher(broker, device_id)
        try:
            try:
                api.request(
                    "PUT",
                    f"/api/v1/devices/{device_id}/credentials",
                    json={"username": username, "password": password},
                )
            except UserError:
                admin.run([{"command": "deleteClient", "username": username}])
                raise
            if watcher.wait_for({username}, wait_s) is None:
                return Rotation(device_id, username, "pending", [])
        finally:
            watcher.close()
        return Rotation(device_id, username, "done", _retire(admin, username, old))


def finish_rotation(broker: BrokerDir, device_id: str, wait_s: float) -> Rotation:
    """Retire every identity but the one the device reports in use."""
    device_id = checked_device_id(device_id)
    with DynsecAdmin(broker.url("admin")) as admin:
        identities = _identities(admin, device_id)
        watcher = ReportedWatcher(broker, device_id)
        try:
            in_use = watcher.wait_for(set(identities), wait_s)
        finally:
            watcher.close()
        if in_use is None:
            return Rotation(device_id, "", "pending", [])
        return Rotation(device_id, in_use, "done", _retire(admin, in_use, identities))
