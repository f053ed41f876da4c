"""The node's check of the controller's signature on receipts, commands and desired config.

Same construction as camfleet/proto/signing.py (docs/protocol.md "Signed messages"): the
payload ends with field 100 (``A2 06 20`` + 32 bytes), the HMAC-SHA256 with the device's key
over ``"camfleet-hmac-v1 <kind> <device id>\\n"`` + everything before that field. Nothing is
re-encoded: the bytes before the trailer are hashed and then decoded.
"""

from ota import equal, hmac_sha256

TRAILER = b"\xa2\x06\x20"
SIGNED_KINDS = ("cmd", "receipt", "desired")


def verify(key, kind, device_id, payload):
    """The signed body, or None when the signature is missing or wrong."""
    n = len(TRAILER) + 32
    if len(payload) < n or payload[-n:-32] != TRAILER:
        return None
    body = payload[:-n]
    context = ("camfleet-hmac-v1 %s %s\n" % (kind, device_id)).encode()
    if not equal(hmac_sha256(key, context + body), payload[-32:]):
        return None
    return body
