"""The camfleet v1 topic scheme: build, parse and validate topics.

Device topics are ``{root}/v1/{device_id}/{kind}``; group commands
``{root}/v1/_group/{group}/cmd``; controller presence ``{root}/v1/_controller/state``.

A device id (and a group name) is 1-64 characters of ``[a-z0-9_-]`` and does not start with
``_``: names starting with ``_`` are reserved for the ``_group`` and ``_controller`` segments, so a
device can never be mistaken for them. Anything else (``+``, ``#``, ``/``, NUL, upper case, empty,
too long) is refused with a :class:`~camfleet.proto.errors.ContractError` naming the bad value.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from camfleet.proto.errors import ContractError, Reason

DEFAULT_ROOT = "camfleet"
VERSION = "v1"
GROUP_SEGMENT = "_group"
CONTROLLER_SEGMENT = "_controller"

_ID_RE = re.compile(r"[a-z0-9-][a-z0-9_-]{0,63}")
_ROOT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Kind(enum.StrEnum):
    """What a device topic carries. The value is the topic suffix after the device id."""

    STATE = "state"  # device -> all, retained: birth / will (DeviceState)
    FRAME = "frame"  # device -> controller: one whole frame (Frame)
    CHUNK = "chunk"  # device -> controller: part of a large frame (FrameChunk)
    TELEMETRY = "telemetry"  # device -> all (Telemetry)
    EVENT = "event"  # device -> all (Event)
    ACK = "ack"  # device -> controller (Ack)
    REPORTED = "reported"  # device -> controller, retained (Reported)
    OTA_REQUEST = "ota/request"  # device -> controller (OtaBlockRequest)
    CMD = "cmd"  # controller -> device (Command)
    RECEIPT = "receipt"  # controller -> device (Receipt)
    DESIRED = "desired"  # controller -> device, retained (Desired)
    OTA_BLOCK = "ota/block"  # controller -> device (OtaBlock)


#: Kinds a device publishes (the controller subscribes to these).
DEVICE_TO_CONTROLLER = frozenset(
    {
        Kind.STATE,
        Kind.FRAME,
        Kind.CHUNK,
        Kind.TELEMETRY,
        Kind.EVENT,
        Kind.ACK,
        Kind.REPORTED,
        Kind.OTA_REQUEST,
    }
)
#: Kinds the controller publishes to one device (the device subscribes to these).
CONTROLLER_TO_DEVICE = frozenset({Kind.CMD, Kind.RECEIPT, Kind.DESIRED, Kind.OTA_BLOCK})
#: Kinds published retained.
RETAINED = frozenset({Kind.STATE, Kind.DESIRED, Kind.REPORTED})


def validate_device_id(device_id: object) -> str:
    """Return ``device_id`` if it is a valid device id, else raise ContractError(BAD_ID)."""
    return _validate_name(device_id, "device id")


def validate_group(group: object) -> str:
    """Return ``group`` if it is a valid group name (same rules as device ids)."""
    return _validate_name(group, "group name")


def is_valid_device_id(device_id: object) -> bool:
    return isinstance(device_id, str) and _ID_RE.fullmatch(device_id) is not None


def _validate_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ContractError(Reason.BAD_ID, f"{what} must be a string, got {type(value).__name__}")
    if _ID_RE.fullmatch(value) is None:
        raise ContractError(
            Reason.BAD_ID,
            f"invalid {what} {value!r}: use 1-64 of a-z 0-9 _ - (not starting with _)",
        )
    return value


def validate_root(root: object) -> str:
    if not isinstance(root, str) or _ROOT_RE.fullmatch(root) is None:
        raise ContractError(
            Reason.BAD_ID, f"invalid topic root {root!r}: use 1-64 of A-Z a-z 0-9 _ -"
        )
    return root


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed camfleet topic.

    ``device_id`` is set for device topics, ``group`` for group commands; ``kind`` is the Kind
    (``Kind.STATE`` for the controller presence topic, where both ids are None).
    """

    root: str
    kind: Kind
    device_id: str | None = None
    group: str | None = None

    @property
    def is_controller(self) -> bool:
        return self.device_id is None and self.group is None

    def __str__(self) -> str:
        if self.group is not None:
            return group_cmd_topic(self.group, self.root)
        if self.device_id is None:
            return controller_state_topic(self.root)
        return device_topic(self.device_id, self.kind, self.root)


def device_topic(device_id: str, kind: Kind | str, root: str = DEFAULT_ROOT) -> str:
    """``{root}/v1/{device_id}/{kind}``, validating every part."""
    return f"{validate_root(root)}/{VERSION}/{validate_device_id(device_id)}/{Kind(kind).value}"


def group_cmd_topic(group: str, root: str = DEFAULT_ROOT) -> str:
    """``{root}/v1/_group/{group}/cmd``: a command every member of the group receives."""
    return f"{validate_root(root)}/{VERSION}/{GROUP_SEGMENT}/{validate_group(group)}/cmd"


def controller_state_topic(root: str = DEFAULT_ROOT) -> str:
    """``{root}/v1/_controller/state``: the controller's retained presence."""
    return f"{validate_root(root)}/{VERSION}/{CONTROLLER_SEGMENT}/state"


def parse(topic: str, root: str = DEFAULT_ROOT) -> Topic:
    """Parse a topic string received from the broker.

    Raises ContractError(BAD_TOPIC) naming the problem for anything that is not a camfleet v1
    topic under ``root``.
    """
    if not isinstance(topic, str):
        raise ContractError(Reason.BAD_TOPIC, f"topic must be a string, got {type(topic).__name__}")
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != root or parts[1] != VERSION:
        raise ContractError(Reason.BAD_TOPIC, f"{topic!r} is not under {root}/{VERSION}/")
    owner = parts[2]
    rest = "/".join(parts[3:])
    if owner == CONTROLLER_SEGMENT:
        if rest != "state":
            raise ContractError(Reason.BAD_TOPIC, f"{topic!r}: unknown controller topic {rest!r}")
        return Topic(root, Kind.STATE)
    if owner == GROUP_SEGMENT:
        if len(parts) != 5 or parts[4] != "cmd":
            raise ContractError(Reason.BAD_TOPIC, f"{topic!r}: group topics end in /cmd")
        if not is_valid_device_id(parts[3]):
            raise ContractError(Reason.BAD_TOPIC, f"{topic!r}: invalid group name {parts[3]!r}")
        return Topic(root, Kind.CMD, group=parts[3])
    if not is_valid_device_id(owner):
        raise ContractError(Reason.BAD_TOPIC, f"{topic!r}: invalid device id {owner!r}")
    try:
        kind = Kind(rest)
    except ValueError:
        raise ContractError(Reason.BAD_TOPIC, f"{topic!r}: unknown kind {rest!r}") from None
    return Topic(root, kind, device_id=owner)


# --- subscription filters -------------------------------------------------------------------


def device_filter(kind: Kind | str, device_id: str | None = None, root: str = DEFAULT_ROOT) -> str:
    """Filter for one kind of one device, or of every device (``+``) when device_id is None."""
    owner = "+" if device_id is None else validate_device_id(device_id)
    return f"{validate_root(root)}/{VERSION}/{owner}/{Kind(kind).value}"


def controller_filters(root: str = DEFAULT_ROOT, share_group: str | None = None) -> list[str]:
    """Filters the controller subscribes to: every device-to-controller kind of every device.

    With ``share_group``, frame and chunk filters become shared subscriptions
    (``$share/{group}/...``) so several controller processes split the frame load.
    """
    filters = []
    for kind in sorted(DEVICE_TO_CONTROLLER):
        f = device_filter(kind, None, root)
        if share_group is not None and kind in (Kind.FRAME, Kind.CHUNK):
            f = f"$share/{validate_group(share_group)}/{f}"
        filters.append(f)
    return filters


def device_filters(
    device_id: str, groups: tuple[str, ...] = (), root: str = DEFAULT_ROOT
) -> list[str]:
    """Filters a device subscribes to: its controller-to-device kinds and its groups' commands."""
    filters = [device_topic(device_id, kind, root) for kind in sorted(CONTROLLER_TO_DEVICE)]
    filters += [group_cmd_topic(g, root) for g in groups]
    return filters


# --- integration topics (outside the protobuf namespace; configurable) -----------------------


def latest_jpeg_topic(device_id: str, prefix: str = "camfleet/jpeg") -> str:
    """Retained raw JPEG of a device's latest frame: Home Assistant's camera.mqtt reads it as is."""
    return f"{prefix}/{validate_device_id(device_id)}"


def ha_discovery_topic(
    device_id: str, component: str = "camera", prefix: str = "homeassistant"
) -> str:
    """Home Assistant MQTT discovery config topic for one entity of a device."""
    return f"{prefix}/{component}/camfleet_{validate_device_id(device_id)}/config"
