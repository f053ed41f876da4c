"""Signed controller-to-device messages: receipts, commands and desired config.

A signed payload is the message's normal encoding (``hmac`` unset) followed by field 100
(``hmac``, 32 bytes), which protobuf encoders put last because it is the highest number:

    signed = body || A2 06 20 || HMAC-SHA256(key, "camfleet-hmac-v1 " kind " " device "\\n" body)

``kind`` is the topic kind (``cmd``, ``receipt``, ``desired``) and ``device`` the id in the
topic, so a signature made for one device or one kind is worthless on another topic. The
verifier needs no re-encoding: it checks the last 35 bytes and hashes what precedes them (the
ESP32 node does the same in esp32_node/signing.py). docs/protocol.md "Signed messages".
"""

from __future__ import annotations

import hashlib
import hmac

from camfleet.proto.topics import Kind

#: Field 100, wire type 2 (length-delimited), length 32.
TRAILER = b"\xa2\x06\x20"
MAC_BYTES = 32
SIGNED_KINDS = frozenset({Kind.CMD, Kind.RECEIPT, Kind.DESIRED})


def _context(kind: Kind, device_id: str) -> bytes:
    return f"camfleet-hmac-v1 {kind.value} {device_id}\n".encode()


def mac(key: bytes, kind: Kind, device_id: str, body: bytes) -> bytes:
    return hmac.new(key, _context(kind, device_id) + body, hashlib.sha256).digest()


def sign(key: bytes, kind: Kind, device_id: str, body: bytes) -> bytes:
    """``body`` (an encoding without ``hmac``) with its signature appended as field 100."""
    return body + TRAILER + mac(key, kind, device_id, body)


def verify(key: bytes, kind: Kind, device_id: str, payload: bytes) -> bytes | None:
    """The signed body if ``payload`` carries a valid signature for this device and kind,
    else None (unsigned, truncated, signed with another key, for another device or kind)."""
    n = len(TRAILER) + MAC_BYTES
    if len(payload) < n or payload[-n:-MAC_BYTES] != TRAILER:
        return None
    body = payload[:-n]
    if not hmac.compare_digest(payload[-MAC_BYTES:], mac(key, kind, device_id, body)):
        return None
    return body
