"""Broker credentials delivered to a device in its desired config (``camfleet device rotate``).

The desired topic is readable by the dashboard identity, so the password travels encrypted for
the one device that holds the key:

    enc_key    = HKDF-Expand-SHA256(device key, "camfleet-credentials-v1 " device_id, 32)
    ciphertext = AES-256-CBC(enc_key, iv = 16 random bytes, PKCS#7(password))

The device key is 32 uniformly random bytes, so it serves as HKDF's pseudorandom key as is (RFC
5869 section 3.3); the derived key is never the signing key. Integrity and origin come from the
HMAC of the Desired that carries the credentials (encrypt-then-MAC), checked before anything
reads it; AES-CBC (not an AEAD) because MicroPython's ``cryptolib`` on the ESP32 offers ECB and
CBC only. docs/protocol.md "Credentials".
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from camfleet.proto.v1 import config_pb2

INFO = b"camfleet-credentials-v1 "


def encryption_key(device_key: bytes, device_id: str) -> bytes:
    # HKDF-Expand with L = 32: T(1) = HMAC(PRK, info || 0x01) is the whole output.
    return hmac.new(device_key, INFO + device_id.encode() + b"\x01", hashlib.sha256).digest()


def seal(
    device_key: bytes, device_id: str, username: str, password: str
) -> config_pb2.BrokerCredentials:
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(password.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(encryption_key(device_key, device_id)), modes.CBC(iv)).encryptor()
    return config_pb2.BrokerCredentials(
        username=username, iv=iv, ciphertext=enc.update(plain) + enc.finalize()
    )


def open_password(
    device_key: bytes, device_id: str, creds: config_pb2.BrokerCredentials
) -> str | None:
    """The password, or None when it cannot be decrypted (wrong key, damaged, bad padding)."""
    if len(creds.iv) != 16 or not creds.ciphertext or len(creds.ciphertext) % 16:
        return None
    dec = Cipher(
        algorithms.AES(encryption_key(device_key, device_id)), modes.CBC(creds.iv)
    ).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(dec.update(creds.ciphertext) + dec.finalize())
        return (plain + unpadder.finalize()).decode()
    except ValueError:  # bad padding or not UTF-8
        return None
