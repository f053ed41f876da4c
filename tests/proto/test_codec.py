"""Codec: round trips, per-kind rules, and the documented error for every kind of bad input."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camfleet.proto import codec
from camfleet.proto.errors import ContractError, Reason
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, config_pb2, frame_pb2, state_pb2, telemetry_pb2
from tests.proto.samples import SAMPLES, sample_frame


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_round_trips(kind: Kind) -> None:
    message = SAMPLES[kind]
    decoded = codec.decode(kind, codec.encode(message))
    assert decoded.message == message
    assert decoded.unknown_fields is False


def test_encode_is_deterministic_with_maps() -> None:
    a = sample_frame(b"x" * 10, metadata={f"k{i}": str(i) for i in range(20)})
    b = frame_pb2.Frame()
    b.CopyFrom(a)
    assert codec.encode(a) == codec.encode(b)


def test_frame_with_wrong_sha256_is_a_checksum_mismatch() -> None:
    frame = sample_frame(b"jpeg bytes")
    frame.sha256 = hashlib.sha256(b"other").digest()
    with pytest.raises(ContractError) as info:
        codec.decode(Kind.FRAME, codec.encode(frame))
    assert info.value.reason is Reason.CHECKSUM_MISMATCH


def test_frame_with_wrong_size_is_a_checksum_mismatch() -> None:
    frame = sample_frame(b"jpeg bytes")
    frame.size = 3
    with pytest.raises(ContractError) as info:
        codec.decode(Kind.FRAME, codec.encode(frame))
    assert info.value.reason is Reason.CHECKSUM_MISMATCH


@pytest.mark.parametrize(
    ("kind", "message", "words"),
    [
        (Kind.FRAME, frame_pb2.Frame(session=1, seq=1), "no image data"),
        (Kind.ACK, command_pb2.Ack(status=command_pb2.ACK_STATUS_DONE), "no command_id"),
        (Kind.ACK, command_pb2.Ack(command_id="c1"), "status is unspecified"),
        (Kind.CMD, command_pb2.Command(id="c1"), "no action"),
        (Kind.STATE, state_pb2.DeviceState(session=3), "presence is unspecified"),
        (Kind.DESIRED, config_pb2.Desired(updated_at_ms=5), "version must be >= 1"),
        (Kind.EVENT, telemetry_pb2.Event(message="x"), "no type"),
    ],
)
def test_broken_rules_are_invalid_with_a_reason(kind: Kind, message: object, words: str) -> None:
    with pytest.raises(ContractError) as info:
        codec.decode(kind, codec.encode(message))  # type: ignore[arg-type]
    assert info.value.reason is Reason.INVALID
    assert words in str(info.value)


def test_a_telemetry_message_on_a_frame_topic_is_the_wrong_kind() -> None:
    payload = codec.encode(telemetry_pb2.Telemetry(timestamp_ms=5, uptime_ms=3, session=2))
    with pytest.raises(ContractError) as info:
        codec.decode(Kind.FRAME, payload)
    assert info.value.reason is Reason.WRONG_KIND


def test_a_frame_on_an_ack_topic_is_the_wrong_kind() -> None:
    payload = codec.encode(sample_frame(b"abc"))
    with pytest.raises(ContractError) as info:
        codec.decode(Kind.ACK, payload)
    # Frame's field 3 is a varint where Ack's is a string: a clash the codec names as such.
    assert info.value.reason is Reason.WRONG_KIND
    assert "not a Ack" in str(info.value) and "field detail (3)" in str(info.value)


def test_oversize_payload_is_refused_before_parsing() -> None:
    with pytest.raises(ContractError) as info:
        codec.decode(Kind.FRAME, b"\x00" * 101, max_bytes=100)
    assert info.value.reason is Reason.OVERSIZE


def test_unknown_fields_from_a_newer_device_are_accepted_and_flagged() -> None:
    # Field 999 (varint) is unknown to this reader: a newer device may send it.
    payload = codec.encode(SAMPLES[Kind.TELEMETRY]) + b"\xb8\x3e\x01"
    decoded = codec.decode(Kind.TELEMETRY, payload)
    assert decoded.unknown_fields is True
    assert decoded.message != SAMPLES[Kind.TELEMETRY]  # the unknown field is kept ...
    decoded.message.DiscardUnknownFields()
    assert decoded.message == SAMPLES[Kind.TELEMETRY]  # ... next to every known one


def test_unknown_kind_name_is_a_bad_topic() -> None:
    with pytest.raises(ContractError) as info:
        codec.decode("nonsense", b"")
    assert info.value.reason is Reason.BAD_TOPIC


def test_make_frame_fills_identity_and_checksum() -> None:
    frame = codec.make_frame(b"abc", session=4, seq=9, captured_at_ms=7, metadata={"a": "b"})
    assert frame.capture_id == "4-9" and frame.size == 3
    assert frame.sha256 == hashlib.sha256(b"abc").digest()
    assert dict(frame.metadata) == {"a": "b"}


@settings(max_examples=300)
@given(st.sampled_from(list(Kind)), st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_the_documented_error(kind: Kind, payload: bytes) -> None:
    try:
        decoded = codec.decode(kind, payload)
    except ContractError as exc:
        assert isinstance(exc.reason, Reason)
        assert exc.detail
    else:
        assert decoded.message.DESCRIPTOR is codec.MESSAGE_FOR_KIND[kind].DESCRIPTOR


@settings(max_examples=200)
@given(
    st.binary(min_size=1, max_size=4096),
    st.integers(1, 2**32 - 1),
    st.integers(1, 2**32 - 1),
    st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5),
    st.booleans(),
)
def test_frame_round_trip_property(
    data: bytes, session: int, seq: int, metadata: dict[str, str], historical: bool
) -> None:
    frame = codec.make_frame(
        data, session=session, seq=seq, metadata=metadata, historical=historical
    )
    assert codec.decode(Kind.FRAME, codec.encode(frame)).message == frame


@settings(max_examples=150)
@given(st.sampled_from(list(Kind)), st.data())
def test_mutated_valid_payloads_raise_only_the_documented_error(
    kind: Kind, data: st.DataObject
) -> None:
    payload = bytearray(codec.encode(SAMPLES[kind]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    try:
        codec.decode(kind, bytes(payload))
    except ContractError as exc:
        assert isinstance(exc.reason, Reason)


def test_unknown_fields_inside_a_repeated_sub_message_are_flagged() -> None:
    """A newer writer's field inside an element of a repeated message field (a receipt's
    ``stored`` ranges) is flagged like one at the top. Catches the scan skipping the non-empty
    repeated fields instead of the empty ones (``unknown_fields_total`` would miss them)."""
    extra = frame_pb2.SeqRange(session=8, first_seq=1, last_seq=2).SerializeToString()
    extra += b"\xb8\x3e\x01"  # field 999, a varint: unknown to this reader
    payload = codec.encode(SAMPLES[Kind.RECEIPT]) + b"\x0a" + bytes([len(extra)]) + extra
    decoded = codec.decode(Kind.RECEIPT, payload)
    assert decoded.unknown_fields is True
    assert isinstance(decoded.message, frame_pb2.Receipt)
    assert decoded.message.stored[-1].session == 8
    plain = codec.decode(Kind.RECEIPT, codec.encode(SAMPLES[Kind.RECEIPT]))
    assert plain.unknown_fields is False
