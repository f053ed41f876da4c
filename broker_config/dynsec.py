"""Identities and ACLs for mosquitto's dynamic security plugin.

Two outputs from one set of rules: the plugin's JSON file that ``camfleet broker init`` writes
(the broker loads it at start), and the ``$CONTROL/dynamic-security/v1`` commands that
``camfleet device add/rm/rotate`` send to a running broker (applied live, no restart).

Naming: service identities start with ``_`` (``_controller``, ``_dashboard``, ``_homeassistant``,
``_admin``); device ids never do (camfleet.proto.topics refuses a leading ``_``), so a device
can never be enrolled under a service's name. mosquitto 2.0.11 does not expand ``%u``/``%c`` in
dynsec ACLs, hence one role per device (``device-<id>``) naming its own topics literally.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from camfleet.proto.topics import (
    CONTROLLER_TO_DEVICE,
    DEVICE_TO_CONTROLLER,
    controller_state_topic,
    device_topic,
    group_cmd_topic,
    validate_device_id,
    validate_group,
)

CONTROLLER = "_controller"
DASHBOARD = "_dashboard"
HOMEASSISTANT = "_homeassistant"
ADMIN = "_admin"
SERVICES = (CONTROLLER, DASHBOARD, HOMEASSISTANT, ADMIN)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"

# What the plugin itself uses when it sets a password (mosquitto 2.0: PBKDF2-SHA512, 12-byte
# salt, 101 iterations). The passwords are 32 random bytes, so the count is not what protects them.
_ITERATIONS = 101


def hash_password(password: str) -> dict[str, Any]:
    """The ``password``/``salt``/``iterations`` fields of a dynsec client."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": _ITERATIONS,
    }


def _acl(acltype: str, topic: str, allow: bool = True) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": allow}


def _read(topic: str) -> list[dict[str, Any]]:
    # Both checks: the subscription must fall under the pattern, and each delivered message is
    # checked again (publishClientReceive defaults to deny), so a session taken over by someone
    # else's identity still receives nothing it may not read.
    return [_acl("subscribePattern", topic), _acl("publishClientReceive", topic)]


def device_role_name(device_id: str) -> str:
    return f"device-{validate_device_id(device_id)}"


def device_acls(device_id: str, groups: tuple[str, ...], root: str) -> list[dict[str, Any]]:
    """Publish only its own device-to-controller kinds; read only what is addressed to it."""
    acls = [
        _acl("publishClientSend", device_topic(device_id, k, root))
        for k in sorted(DEVICE_TO_CONTROLLER)
    ]
    for k in sorted(CONTROLLER_TO_DEVICE):
        acls += _read(device_topic(device_id, k, root))
    for g in groups:
        acls += _read(group_cmd_topic(validate_group(g), root))
    acls += _read(controller_state_topic(root))
    return acls


def service_roles(root: str, jpeg_prefix: str, ha_prefix: str) -> list[dict[str, Any]]:
    everything = [f"{root}/#", f"{jpeg_prefix}/#", f"{ha_prefix}/#"]
    controller = [a for t in everything for a in (_acl("publishClientSend", t), *_read(t))]
    dashboard = _read(f"{root}/#") + _read(f"{jpeg_prefix}/#")
    homeassistant = [
        *_read(f"{jpeg_prefix}/#"),
        *_read(f"{ha_prefix}/#"),
        # HA announces itself (birth/will) on <prefix>/status; nothing else.
        _acl("publishClientSend", f"{ha_prefix}/status"),
    ]
    admin = [_acl("publishClientSend", f"{CONTROL_TOPIC}/#"), *_read(f"{CONTROL_TOPIC}/#")]
    return [
        {"rolename": CONTROLLER, "acls": controller},
        {"rolename": DASHBOARD, "acls": dashboard},
        {"rolename": HOMEASSISTANT, "acls": homeassistant},
        {"rolename": ADMIN, "acls": admin},
    ]


def initial_config(
    root: str, passwords: dict[str, str], jpeg_prefix: str, ha_prefix: str
) -> dict[str, Any]:
    """The plugin's JSON file: the four service identities, each with the role of its name."""
    clients = [
        {"username": name, "roles": [{"rolename": name}], **hash_password(passwords[name])}
        for name in SERVICES
    ]
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": service_roles(root, jpeg_prefix, ha_prefix),
    }


# --- live changes ($CONTROL commands) ------------------------------------------------------


def add_device_commands(
    device_id: str, password: str, client_id: str, groups: tuple[str, ...], root: str
) -> list[dict[str, Any]]:
    """Create the device's role and identity. ``clientid`` pins its MQTT client id, so another
    identity cannot take over (and empty) the device's persistent session."""
    role = device_role_name(device_id)
    return [
        {"command": "createRole", "rolename": role, "acls": device_acls(device_id, groups, root)},
        {
            "command": "createClient",
            "username": device_id,
            "password": password,
            "clientid": client_id,
            "roles": [{"rolename": role}],
        },
    ]


def add_cert_device_commands(
    device_id: str, username: str, groups: tuple[str, ...], root: str
) -> list[dict[str, Any]]:
    """The role and a password-less identity for a client certificate whose CN is ``username``
    (the cert listener's ``use_identity_as_username``; its client id is the CN there)."""
    role = device_role_name(device_id)
    return [
        {"command": "createRole", "rolename": role, "acls": device_acls(device_id, groups, root)},
        {"command": "createClient", "username": username, "roles": [{"rolename": role}]},
    ]


def tagged_username(device_id: str, tag: str) -> str:
    """A device identity besides its id: ``<id>.<tag>``, a new random tag each time (a client
    certificate's CN; a rotated password identity). A certificate cannot be un-issued, so a
    revoked one must never match an identity again, not even after the same device id is
    enrolled anew; ``.`` is in no device id, so no other device's either."""
    return f"{validate_device_id(device_id)}.{tag}"


def is_identity_of(device_id: str, username: str) -> bool:
    """The device's first password identity (its id) and each tagged one it has."""
    return username == device_id or username.startswith(f"{device_id}.")


def remove_device_commands(device_id: str, usernames: list[str]) -> list[dict[str, Any]]:
    """Delete the device's identities among ``usernames`` (the plugin disconnects their live
    connections at once) and its role."""
    validate_device_id(device_id)
    return [
        *(
            {"command": "deleteClient", "username": u}
            for u in usernames
            if is_identity_of(device_id, u)
        ),
        {"command": "deleteRole", "rolename": device_role_name(device_id)},
    ]


def set_password_command(username: str, password: str) -> dict[str, Any]:
    return {"command": "setClientPassword", "username": username, "password": password}
