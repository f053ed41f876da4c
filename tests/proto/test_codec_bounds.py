"""Every bound the codec checks, on its own and at its edge: the value just inside is accepted,
the value just outside is refused with the documented reason. Each case catches the rule being
dropped or its comparison moved by one (``<`` for ``<=``, ``>=`` for ``>``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from camfleet.proto import codec, topics
from camfleet.proto.errors import ContractError, Reason
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import (
    command_pb2,
    common_pb2,
    config_pb2,
    frame_pb2,
    ota_pb2,
    state_pb2,
    telemetry_pb2,
)

DATA = bytes(range(256)) * 4
SHA = hashlib.sha256(DATA).digest()


def chunk(**fields: Any) -> frame_pb2.FrameChunk:
    """A valid chunk 1 of 3 (bytes 100..199 of a 300-byte frame), with ``fields`` changed."""
    c = frame_pb2.FrameChunk(
        capture_id="7-1",
        session=7,
        seq=1,
        index=1,
        count=3,
        total_size=300,
        sha256=SHA,
        offset=100,
        data=DATA[100:200],
    )
    for name, value in fields.items():
        if name == "header":
            c.header.CopyFrom(value)
        else:
            setattr(c, name, value)
    return c


def frame(**fields: Any) -> frame_pb2.Frame:
    f = codec.make_frame(DATA, session=7, seq=1)
    for name, value in fields.items():
        setattr(f, name, value)
    return f


def receipt(*ranges: tuple[int, int, int]) -> frame_pb2.Receipt:
    return frame_pb2.Receipt(
        stored=[frame_pb2.SeqRange(session=s, first_seq=a, last_seq=b) for s, a, b in ranges]
    )


# (kind, message that breaks exactly one rule, reason, words in the detail)
REFUSED: list[tuple[Kind, Any, Reason, str]] = [
    (Kind.CHUNK, chunk(index=3), Reason.INVALID, "index 3 not below count 3"),
    (Kind.CHUNK, chunk(index=4), Reason.INVALID, "not below count"),
    (Kind.CHUNK, chunk(index=0, count=0), Reason.INVALID, "not below count 0"),
    (Kind.CHUNK, chunk(offset=201), Reason.INVALID, "bytes 201..301 outside total_size 300"),
    (Kind.CHUNK, chunk(total_size=199), Reason.INVALID, "outside total_size"),
    (Kind.CHUNK, chunk(total_size=0), Reason.INVALID, "outside total_size 0"),
    (Kind.CHUNK, chunk(data=b""), Reason.INVALID, "no data"),
    (Kind.CHUNK, chunk(sha256=SHA[:31]), Reason.INVALID, "sha256 must be 32 bytes, got 31"),
    (Kind.CHUNK, chunk(sha256=SHA + b"\0"), Reason.INVALID, "got 33"),
    (Kind.CHUNK, chunk(seq=0), Reason.INVALID, "seq must be >= 1"),
    (Kind.CHUNK, chunk(index=0, offset=0), Reason.INVALID, "chunk 0 must carry the frame header"),
    (Kind.FRAME, frame(data=b""), Reason.INVALID, "no image data"),
    (Kind.FRAME, frame(size=len(DATA) + 1), Reason.CHECKSUM_MISMATCH, "size field"),
    (Kind.FRAME, frame(size=len(DATA) - 1), Reason.CHECKSUM_MISMATCH, "size field"),
    (Kind.FRAME, frame(sha256=SHA[:31]), Reason.INVALID, "sha256 must be 32 bytes, got 31"),
    (Kind.FRAME, frame(sha256=SHA + b"\0"), Reason.INVALID, "got 33"),
    (Kind.FRAME, frame(sha256=bytes(32)), Reason.CHECKSUM_MISMATCH, "SHA-256 of data"),
    (Kind.FRAME, frame(seq=0), Reason.INVALID, "seq must be >= 1"),
    (
        Kind.RECEIPT,
        frame_pb2.Receipt(timestamp_ms=5),
        Reason.INVALID,
        "covers no frame",
    ),
    (Kind.RECEIPT, receipt((3, 0, 4)), Reason.INVALID, "bad range 0..4 of session 3"),
    (Kind.RECEIPT, receipt((3, 1, 2), (3, 5, 4)), Reason.INVALID, "bad range 5..4"),
    (Kind.ACK, command_pb2.Ack(command_id="c", status=99), Reason.INVALID, "status 99"),  # type: ignore[arg-type]
    (Kind.ACK, command_pb2.Ack(status=command_pb2.ACK_STATUS_DONE), Reason.INVALID, "command_id"),
    (Kind.ACK, command_pb2.Ack(command_id="c"), Reason.INVALID, "status is unspecified"),
    (Kind.CMD, command_pb2.Command(reannounce={}), Reason.INVALID, "no id"),
    (Kind.CMD, command_pb2.Command(id="c"), Reason.INVALID, "no action"),
    (Kind.STATE, state_pb2.DeviceState(session=1), Reason.INVALID, "presence is unspecified"),
    (Kind.EVENT, telemetry_pb2.Event(message="m"), Reason.INVALID, "no type"),
    (Kind.DESIRED, config_pb2.Desired(updated_at_ms=1), Reason.INVALID, "version must be >= 1"),
    (Kind.OTA_REQUEST, ota_pb2.OtaBlockRequest(count=1), Reason.INVALID, "no artifact_id"),
    (
        Kind.OTA_REQUEST,
        ota_pb2.OtaBlockRequest(artifact_id="a", first_block=3),
        Reason.INVALID,
        "count must be >= 1",
    ),
    (Kind.OTA_BLOCK, ota_pb2.OtaBlock(data=b"x", sha256=SHA), Reason.INVALID, "no artifact_id"),
    (Kind.OTA_BLOCK, ota_pb2.OtaBlock(artifact_id="a", sha256=SHA), Reason.INVALID, "no data"),
    (
        Kind.OTA_BLOCK,
        ota_pb2.OtaBlock(artifact_id="a", data=b"x", sha256=SHA[:31]),
        Reason.INVALID,
        "sha256 must be 32 bytes",
    ),
]

# The same rules, at the edge that is still inside: accepted.
ACCEPTED: list[tuple[Kind, Any]] = [
    (Kind.CHUNK, chunk()),
    (Kind.CHUNK, chunk(index=2)),  # the last index, count - 1
    (Kind.CHUNK, chunk(index=0, count=1, offset=0, header=frame_pb2.Frame(session=7, seq=1))),
    (Kind.CHUNK, chunk(offset=200)),  # ends exactly at total_size
    (Kind.CHUNK, chunk(total_size=200)),
    (  # a one-byte frame in one chunk: total_size 1 is a size like any other
        Kind.CHUNK,
        chunk(index=0, count=1, offset=0, total_size=1, data=b"x", header=frame_pb2.Frame(seq=1)),
    ),
    (Kind.FRAME, frame()),
    (Kind.FRAME, codec.make_frame(b"x", session=0, seq=1)),  # one byte; session 0 is allowed
    (Kind.RECEIPT, receipt((3, 1, 1))),  # one frame: first == last
    (Kind.RECEIPT, receipt((0, 1, 2**32 - 1))),
    (Kind.ACK, command_pb2.Ack(command_id="c", status=command_pb2.ACK_STATUS_REJECTED)),
    (Kind.CMD, command_pb2.Command(id="c", reannounce={})),
    (Kind.STATE, state_pb2.DeviceState(presence=state_pb2.PRESENCE_OFFLINE)),
    (Kind.EVENT, telemetry_pb2.Event(type="t")),
    (Kind.DESIRED, config_pb2.Desired(version=1)),
    (Kind.OTA_REQUEST, ota_pb2.OtaBlockRequest(artifact_id="a", count=1)),
    (Kind.OTA_BLOCK, ota_pb2.OtaBlock(artifact_id="a", data=b"x", sha256=SHA)),
    (Kind.TELEMETRY, telemetry_pb2.Telemetry(session=1)),
    (Kind.REPORTED, config_pb2.Reported(version=1)),
]


@pytest.mark.parametrize(("kind", "message", "reason", "words"), REFUSED)
def test_each_bound_on_its_own_is_refused(
    kind: Kind, message: Any, reason: Reason, words: str
) -> None:
    with pytest.raises(ContractError) as info:
        codec.decode(kind, codec.encode(message))
    assert info.value.reason is reason
    assert words in info.value.detail


@pytest.mark.parametrize(("kind", "message"), ACCEPTED)
def test_the_edge_inside_each_bound_is_accepted(kind: Kind, message: Any) -> None:
    decoded = codec.decode(kind, codec.encode(message))
    assert decoded.message == message
    assert decoded.unknown_fields is False


def test_payload_size_limit_is_inclusive() -> None:
    payload = codec.encode(frame())
    assert codec.decode(Kind.FRAME, payload, max_bytes=len(payload)).message == frame()
    with pytest.raises(ContractError) as info:
        codec.decode(Kind.FRAME, payload, max_bytes=len(payload) - 1)
    assert info.value.reason is Reason.OVERSIZE
    # the default limit applies when none is given
    with pytest.raises(ContractError) as info:
        codec.decode(Kind.FRAME, b"\0" * (codec.DEFAULT_MAX_DECODE_BYTES + 1))
    assert info.value.reason is Reason.OVERSIZE


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b"", Reason.EMPTY), ("text", Reason.BAD_PROTOBUF), (b"\xff\xff", Reason.BAD_PROTOBUF)],
)
def test_empty_non_bytes_and_unparseable_payloads(payload: Any, reason: Reason) -> None:
    with pytest.raises(ContractError) as info:
        codec.decode(Kind.TELEMETRY, payload)
    assert info.value.reason is reason


def test_bytearray_and_memoryview_payloads_decode() -> None:
    payload = codec.encode(frame())
    for wrapped in (bytearray(payload), memoryview(payload)):
        assert codec.decode(Kind.FRAME, wrapped).message == frame()


def _with(payload: bytes, extra: bytes) -> bytes:
    return payload + extra


# Field 8 of FrameChunk (header, a Frame) and field 2 of Frame (session, a varint).
CLASHES: list[tuple[str, Kind, Callable[[], bytes]]] = [
    # a known field number with another wire type at the top level: another kind of message
    ("top", Kind.FRAME, lambda: _with(codec.encode(frame()), b"\x12\x01x")),
    # ... and inside a sub-message (FrameChunk.header.session as bytes)
    (
        "nested",
        Kind.CHUNK,
        lambda: (
            codec.encode(chunk(index=0, offset=0, header=frame_pb2.Frame(seq=1)))
            + b"\x42\x03\x12\x01x"
        ),
    ),
]


@pytest.mark.parametrize(("where", "kind", "make"), CLASHES)
def test_a_known_field_with_another_wire_type_is_the_wrong_kind(
    where: str, kind: Kind, make: Callable[[], bytes]
) -> None:
    with pytest.raises(ContractError) as info:
        codec.decode(kind, make())
    assert info.value.reason is Reason.WRONG_KIND, where


def test_unknown_fields_are_found_in_sub_messages_and_map_values() -> None:
    nested = codec.encode(chunk(index=0, offset=0, header=frame_pb2.Frame(seq=1)))
    # FrameChunk.header (field 8) gets an unknown field 999 (varint 1) merged into it
    decoded = codec.decode(Kind.CHUNK, nested + b"\x42\x03\xb8\x3e\x01")
    assert decoded.unknown_fields is True
    cfg = config_pb2.Desired(version=1)
    cfg.config.camera.width = 640
    plain = codec.decode(Kind.DESIRED, codec.encode(cfg))
    assert plain.unknown_fields is False


def test_foreign_fields_with_a_broken_rule_are_the_wrong_kind_not_invalid() -> None:
    # an Event (type field 1 unset) carrying unknown fields: another message, not a bad Event
    payload = b"\xb8\x3e\x01" + codec.encode(telemetry_pb2.Event(message="m"))
    with pytest.raises(ContractError) as info:
        codec.decode(Kind.EVENT, payload)
    assert info.value.reason is Reason.WRONG_KIND
    # only foreign fields: nothing of this kind at all
    with pytest.raises(ContractError) as info:
        codec.decode(Kind.TELEMETRY, b"\xb8\x3e\x01")
    assert info.value.reason is Reason.WRONG_KIND


def test_decode_message_reads_the_topic_first() -> None:
    state = state_pb2.ControllerState(presence=state_pb2.PRESENCE_ONLINE)
    parsed, decoded = codec.decode_message(topics.controller_state_topic(), codec.encode(state))
    assert parsed.is_controller and decoded.message == state
    topic = topics.device_topic("cam-1", Kind.FRAME)
    parsed, decoded = codec.decode_message(topic, codec.encode(frame()))
    assert parsed.kind is Kind.FRAME and decoded.message == frame()
    with pytest.raises(ContractError) as info:
        codec.decode_message("camfleet/v1/cam+1/frame", codec.encode(frame()))
    assert info.value.reason is Reason.BAD_TOPIC
    with pytest.raises(ContractError) as info:
        codec.decode_message(topic, codec.encode(frame()), max_bytes=10)
    assert info.value.reason is Reason.OVERSIZE


def test_make_frame_copies_messages_and_maps() -> None:
    settings = common_pb2.CameraSettings(width=320, height=240)
    f = codec.make_frame(
        b"ab", session=2, seq=3, capture_id="x", settings=settings, metadata={"k": "v"}, width=9
    )
    assert (f.capture_id, f.settings.width, dict(f.metadata)) == ("x", 320, {"k": "v"})
    assert f.width == 9
    assert f.content_type == "image/jpeg" and f.size == 2
    assert codec.make_frame(b"ab", session=2, seq=3, content_type="image/png").content_type == (
        "image/png"
    )
