"""Encode and decode camfleet payloads, with the checks every receiver needs.

``decode(kind, payload)`` returns the message the topic kind carries, or raises
:class:`~camfleet.proto.errors.ContractError` with one of these reasons, and nothing else:

- ``oversize``: the payload is larger than ``max_bytes``;
- ``empty``: a zero-byte payload, which on a retained topic is MQTT's deletion of the retained
  message (receivers usually act on it rather than count it as an error);
- ``bad_protobuf``: not parseable as the kind's message;
- ``wrong_kind``: parseable, but a field number the kind defines arrives with another wire type
  (schema evolution never does that), or only foreign fields, or foreign fields and a broken
  rule: another kind of message (e.g. Telemetry on a frame topic);
- ``invalid``: the right message breaking a rule of its kind (a Frame without data, an Ack
  without command id, ...);
- ``checksum_mismatch``: a Frame whose size or SHA-256 does not match its data.

Unknown fields alone are not an error (a newer device may send fields this reader lacks): the
result's ``unknown_fields`` says so, for counting.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from camfleet.proto import topics
from camfleet.proto.errors import ContractError, Reason
from camfleet.proto.topics import Kind, Topic
from camfleet.proto.v1 import command_pb2, config_pb2, frame_pb2, ota_pb2, state_pb2, telemetry_pb2

#: Largest payload decode() accepts by default. Frames above the device's max payload travel as
#: chunks, so legitimate messages stay far below this; it bounds memory for hostile input.
DEFAULT_MAX_DECODE_BYTES = 4 * 1024 * 1024
#: Default max MQTT payload a device sends (the AWS IoT Core limit); larger frames are chunked.
DEFAULT_MAX_PAYLOAD = 128 * 1024
SHA256_LEN = 32

M = TypeVar("M", bound=Message)

MESSAGE_FOR_KIND: dict[Kind, type[Message]] = {
    Kind.STATE: state_pb2.DeviceState,
    Kind.FRAME: frame_pb2.Frame,
    Kind.CHUNK: frame_pb2.FrameChunk,
    Kind.TELEMETRY: telemetry_pb2.Telemetry,
    Kind.EVENT: telemetry_pb2.Event,
    Kind.ACK: command_pb2.Ack,
    Kind.REPORTED: config_pb2.Reported,
    Kind.OTA_REQUEST: ota_pb2.OtaBlockRequest,
    Kind.CMD: command_pb2.Command,
    Kind.RECEIPT: frame_pb2.Receipt,
    Kind.DESIRED: config_pb2.Desired,
    Kind.OTA_BLOCK: ota_pb2.OtaBlock,
}


@dataclass(frozen=True, slots=True)
class Decoded(Generic[M]):
    """A decoded payload: the message, and whether it carried fields this reader does not know."""

    message: M
    unknown_fields: bool


def encode(message: Message) -> bytes:
    """Serialize a message. Deterministic map ordering, so equal messages give equal bytes."""
    return message.SerializeToString(deterministic=True)


def decode(
    kind: Kind | str,
    payload: bytes | bytearray | memoryview,
    max_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> Decoded[Message]:
    """Decode and check the payload of a device or controller topic of ``kind``."""
    try:
        kind = Kind(kind)
    except ValueError:
        raise ContractError(Reason.BAD_TOPIC, f"unknown topic kind {kind!r}") from None
    cls = MESSAGE_FOR_KIND[kind]
    return decode_as(cls, payload, max_bytes)


def decode_message(
    topic: str,
    payload: bytes | bytearray | memoryview,
    root: str = topics.DEFAULT_ROOT,
    max_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> tuple[Topic, Decoded[Message]]:
    """Parse ``topic`` and decode ``payload`` as the message that topic carries.

    The single entry point for anything receiving camfleet traffic: a bad topic and a bad payload
    both raise ContractError. The controller presence topic carries a ControllerState.
    """
    parsed = topics.parse(topic, root)
    if parsed.is_controller:
        return parsed, decode_as(state_pb2.ControllerState, payload, max_bytes)
    return parsed, decode(parsed.kind, payload, max_bytes)


def decode_as(
    cls: type[M], payload: bytes | bytearray | memoryview, max_bytes: int = DEFAULT_MAX_DECODE_BYTES
) -> Decoded[M]:
    """Decode ``payload`` as message class ``cls`` and apply that class's rules."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise ContractError(
            Reason.BAD_PROTOBUF, f"payload must be bytes, got {type(payload).__name__}"
        )
    name = cls.DESCRIPTOR.name
    if len(payload) > max_bytes:
        raise ContractError(
            Reason.OVERSIZE, f"{name} payload of {len(payload)} bytes > {max_bytes}"
        )
    if not payload:
        raise ContractError(
            Reason.EMPTY, f"empty {name} payload (on a retained topic: the message was cleared)"
        )
    message = cls()
    try:
        message.ParseFromString(bytes(payload))
    except (DecodeError, RuntimeError, ValueError) as exc:
        # upb raises DecodeError; RuntimeError/ValueError cover recursion limits and bad UTF-8.
        raise ContractError(Reason.BAD_PROTOBUF, f"not a {name}: {exc}") from None
    foreign, clash = _scan_unknown(message)
    if clash is not None:
        raise ContractError(Reason.WRONG_KIND, f"not a {name}: {clash}")
    if foreign and not message.ListFields():
        raise ContractError(Reason.WRONG_KIND, f"payload has no {name} field, only foreign ones")
    rule = _RULES.get(name)
    if rule is not None:
        problem = rule(message)
        if problem is not None:
            if foreign:
                raise ContractError(
                    Reason.WRONG_KIND, f"not a {name} ({problem}; carries foreign fields)"
                )
            reason = Reason.CHECKSUM_MISMATCH if problem.startswith("checksum") else Reason.INVALID
            raise ContractError(reason, f"{name}: {problem}")
    return Decoded(message, foreign)


@functools.cache
def _message_fields(descriptor: Descriptor) -> tuple[FieldDescriptor, ...]:
    """The fields of a message type that hold messages, by number (ListFields' order). The
    scan visits only these: ``ListFields`` also returns the scalar values, and upb copies a
    bytes field on each access (~10 us for a frame's 50 KB of JPEG)."""
    return tuple(
        sorted((f for f in descriptor.fields if f.message_type is not None), key=lambda f: f.number)
    )


def _scan_unknown(message: Message) -> tuple[bool, str | None]:
    """Find unknown fields in ``message`` and its sub-messages.

    Returns (any unknown field, clash). A clash is a field number this schema defines arriving
    with another wire type: schema evolution never does that (a field's type cannot change), so
    it means the payload is another kind of message. Unknown *numbers* are a newer writer's
    fields and are accepted.
    """
    unknown = UnknownFieldSet(message)
    found = len(unknown) > 0
    by_number = message.DESCRIPTOR.fields_by_number
    for i in range(len(unknown)):
        item = unknown[i]
        if item.field_number in by_number:
            field = by_number[item.field_number]
            return True, f"field {field.name} ({item.field_number}) has wire type {item.wire_type}"
    for field in _message_fields(message.DESCRIPTOR):
        if field.is_repeated:
            value = getattr(message, field.name)
            if not value:
                continue
        elif message.HasField(field.name):
            value = getattr(message, field.name)
        else:
            continue
        entry = field.message_type
        assert entry is not None  # _message_fields keeps only these
        if entry.GetOptions().map_entry:
            if entry.fields_by_name["value"].message_type is None:
                continue
            values = list(value.values())
        elif field.is_repeated:
            values = list(value)
        else:
            values = [value]
        for sub in values:
            sub_found, clash = _scan_unknown(sub)
            found = found or sub_found
            if clash is not None:
                return True, f"{field.name}.{clash}"
    return found, None


# --- per-kind rules: return a problem description, or None when the message is acceptable ----


def _frame_rule(m: frame_pb2.Frame) -> str | None:
    data = m.data  # once: upb copies a bytes field on each access
    if not data:
        return "no image data"
    if m.size != len(data):
        return f"checksum: size field {m.size} != {len(data)} bytes of data"
    if len(m.sha256) != SHA256_LEN:
        return f"sha256 must be {SHA256_LEN} bytes, got {len(m.sha256)}"
    if hashlib.sha256(data).digest() != m.sha256:
        return "checksum: SHA-256 of data does not match the sha256 field"
    if m.seq == 0:
        return "seq must be >= 1"
    return None


def _chunk_rule(m: frame_pb2.FrameChunk) -> str | None:
    if m.count == 0 or m.index >= m.count:
        return f"index {m.index} not below count {m.count}"
    if m.total_size == 0 or m.offset + len(m.data) > m.total_size:
        return f"chunk bytes {m.offset}..{m.offset + len(m.data)} outside total_size {m.total_size}"
    if not m.data:
        return "no data"
    if len(m.sha256) != SHA256_LEN:
        return f"sha256 must be {SHA256_LEN} bytes, got {len(m.sha256)}"
    if m.seq == 0:
        return "seq must be >= 1"
    if m.index == 0 and not m.HasField("header"):
        return "chunk 0 must carry the frame header"
    return None


def _state_rule(m: state_pb2.DeviceState | state_pb2.ControllerState) -> str | None:
    if m.presence == state_pb2.PRESENCE_UNSPECIFIED:
        return "presence is unspecified"
    return None


def _ack_rule(m: command_pb2.Ack) -> str | None:
    if not m.command_id:
        return "no command_id"
    if m.status == command_pb2.ACK_STATUS_UNSPECIFIED:
        return "status is unspecified"
    if m.status not in command_pb2.AckStatus.values():
        return f"status {m.status} is not a known AckStatus"
    return None


def _command_rule(m: command_pb2.Command) -> str | None:
    if not m.id:
        return "no id"
    if m.WhichOneof("action") is None:
        return "no action (or an action this reader does not know)"
    return None


def _receipt_rule(m: frame_pb2.Receipt) -> str | None:
    if not m.stored:
        return "covers no frame"
    for r in m.stored:
        if r.first_seq == 0 or r.last_seq < r.first_seq:
            return f"bad range {r.first_seq}..{r.last_seq} of session {r.session}"
    return None


def _event_rule(m: telemetry_pb2.Event) -> str | None:
    return None if m.type else "no type"


def _desired_rule(m: config_pb2.Desired) -> str | None:
    return None if m.version else "version must be >= 1"


def _ota_request_rule(m: ota_pb2.OtaBlockRequest) -> str | None:
    if not m.artifact_id:
        return "no artifact_id"
    if m.count == 0:
        return "count must be >= 1"
    return None


def _ota_block_rule(m: ota_pb2.OtaBlock) -> str | None:
    if not m.artifact_id:
        return "no artifact_id"
    if not m.data:
        return "no data"
    if len(m.sha256) != SHA256_LEN:
        return f"sha256 must be {SHA256_LEN} bytes, got {len(m.sha256)}"
    return None


_RULES: dict[str, Callable[..., str | None]] = {
    "Frame": _frame_rule,
    "FrameChunk": _chunk_rule,
    "DeviceState": _state_rule,
    "ControllerState": _state_rule,
    "Ack": _ack_rule,
    "Command": _command_rule,
    "Receipt": _receipt_rule,
    "Event": _event_rule,
    "Desired": _desired_rule,
    "OtaBlockRequest": _ota_request_rule,
    "OtaBlock": _ota_block_rule,
}


def make_frame(
    data: bytes, *, session: int, seq: int, content_type: str = "image/jpeg", **fields: object
) -> frame_pb2.Frame:
    """Build a Frame for ``data`` with size, sha256 and capture_id filled in."""
    frame = frame_pb2.Frame(
        capture_id=str(fields.pop("capture_id", f"{session}-{seq}")),
        session=session,
        seq=seq,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).digest(),
        data=data,
    )
    for name, value in fields.items():
        if isinstance(value, Message):
            getattr(frame, name).CopyFrom(value)
        elif isinstance(value, dict):
            getattr(frame, name).update(value)
        else:
            setattr(frame, name, value)
    return frame
