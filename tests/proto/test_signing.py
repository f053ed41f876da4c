"""The signed encoding: what the controller appends is the canonical protobuf of the message
with ``hmac`` set, and any change to body, key, device, kind or trailer breaks it."""

from __future__ import annotations

import pytest

from camfleet.proto import codec, signing
from camfleet.proto.receipts import make_receipt
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, config_pb2

KEY = bytes(range(32))
MESSAGES = {
    Kind.RECEIPT: make_receipt([(3, 1), (3, 2), (4, 7)], 1_700_000_000_000, b"incarn08"),
    Kind.CMD: command_pb2.Command(id="c-1", expires_at_ms=5, capture=command_pb2.CaptureNow()),
    Kind.DESIRED: config_pb2.Desired(
        version=7, config=config_pb2.DeviceConfig(spool_max_frames=12)
    ),
}


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_signed_payload_is_the_canonical_encoding_with_hmac_set(kind: Kind) -> None:
    msg = MESSAGES[kind]
    body = codec.encode(msg)
    signed = signing.sign(KEY, kind, "cam-1", body)
    with_field = type(msg)()
    with_field.CopyFrom(msg)
    with_field.hmac = signing.mac(KEY, kind, "cam-1", body)  # type: ignore[attr-defined]
    assert signed == with_field.SerializeToString(deterministic=True)
    assert codec.decode(kind, signed).message == with_field
    assert signing.verify(KEY, kind, "cam-1", signed) == body


def test_every_alteration_is_refused() -> None:
    body = codec.encode(MESSAGES[Kind.RECEIPT])
    signed = signing.sign(KEY, Kind.RECEIPT, "cam-1", body)
    bad = [
        body,  # unsigned
        signed[:-1],  # truncated
        signed + b"\x10\x01",  # something appended after the signature
        bytes([signed[0] ^ 1]) + signed[1:],  # body changed
        signed[:-1] + bytes([signed[-1] ^ 1]),  # signature changed
        signing.sign(bytes(32), Kind.RECEIPT, "cam-1", body),  # another key
        signing.sign(KEY, Kind.RECEIPT, "cam-2", body),  # another device
        signing.sign(KEY, Kind.CMD, "cam-1", body),  # another kind
        b"",
    ]
    for payload in bad:
        assert signing.verify(KEY, Kind.RECEIPT, "cam-1", payload) is None, payload.hex()
