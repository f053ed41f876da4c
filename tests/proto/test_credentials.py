"""The sealed broker password of `camfleet device rotate` (camfleet.proto.credentials)."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from camfleet.proto import credentials

KEY = bytes(range(32))


def test_the_key_is_hkdf_expand_of_the_device_key_and_differs_per_device() -> None:
    info = b"camfleet-credentials-v1 gate-cam"
    expected = HKDFExpand(hashes.SHA256(), 32, info).derive(KEY)
    assert credentials.encryption_key(KEY, "gate-cam") == expected
    assert credentials.encryption_key(KEY, "yard-cam") != expected


def test_only_the_device_key_opens_it_and_malformed_input_is_refused() -> None:
    sealed = credentials.seal(KEY, "gate-cam", "gate-cam.1a2b3c4d", "s3cret-é")
    assert sealed.username == "gate-cam.1a2b3c4d" and b"s3cret" not in sealed.ciphertext
    assert credentials.open_password(KEY, "gate-cam", sealed) == "s3cret-é"
    assert credentials.seal(KEY, "gate-cam", "u", "s3cret-é").iv != sealed.iv  # fresh IV
    # Another key (or the key of another device) never yields the password. (Whether it yields
    # None or garbage depends on the padding it decrypts to: CBC is no integrity check; the
    # Desired's HMAC is, and it is checked before this is ever reached.)
    assert credentials.open_password(os.urandom(32), "gate-cam", sealed) != "s3cret-é"
    assert credentials.open_password(KEY, "yard-cam", sealed) != "s3cret-é"
    short = type(sealed)(username="u", iv=sealed.iv[:8], ciphertext=sealed.ciphertext)
    odd = type(sealed)(username="u", iv=sealed.iv, ciphertext=sealed.ciphertext[:-1])
    empty = type(sealed)(username="u", iv=sealed.iv)
    for bad in (short, odd, empty):
        assert credentials.open_password(KEY, "gate-cam", bad) is None
