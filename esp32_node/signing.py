"""The node's check of the controller's signature on receipts, commands and desired config, and
the decryption of broker credentials delivered in desired config.

Same construction as camfleet/proto/signing.py (docs/protocol.md "Signed messages"): the
payload ends with field 100 (``A2 06 20`` + 32 bytes), the HMAC-SHA256 with the device's key
over ``"camfleet-hmac-v1 <kind> <device id>\\n"`` + everything before that field. Nothing is
re-encoded: the bytes before the trailer are hashed and then decoded.
"""

import cryptolib
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


def open_password(key, device_id, creds):
    """The password of a ``BrokerCredentials`` dict, or None when it cannot be decrypted.

    Same construction as camfleet/proto/credentials.py (docs/protocol.md "Credentials"): AES-256-
    CBC with HKDF-Expand-SHA256(key, "camfleet-credentials-v1 <device id>", 32), which for 32
    bytes is one HMAC; PKCS#7 padding. The signature of the Desired carrying it was checked first.
    """
    iv = creds.get("iv", b"")
    ct = creds.get("ciphertext", b"")
    if len(iv) != 16 or not ct or len(ct) % 16:
        return None
    k = hmac_sha256(key, b"camfleet-credentials-v1 " + device_id.encode() + b"\x01")
    plain = cryptolib.aes(k, 2, iv).decrypt(ct)  # mode 2: CBC
    n = plain[-1]
    if not 1 <= n <= 16 or plain[-n:] != bytes([n]) * n:
        return None
    try:
        return plain[:-n].decode()
    except UnicodeError:
        return None
