"""Broker credentials delivered in desired config (``camfleet device rotate``), on the node.

Imported only when a desired config carries credentials or the broker refuses the identity in
use: under MicroPython's unix port (the tests) a module's bytecode lives in the heap, and the
large-frame wake has no room to spare; on the board every module is frozen in flash.

Decryption as camfleet/proto/credentials.py (docs/protocol.md "Credentials"): AES-256-CBC with
key HKDF-Expand-SHA256(device key, "camfleet-credentials-v1 <device id>", 32), which for 32 bytes
is one HMAC; PKCS#7 padding. The signature of the Desired carrying them was checked before.
NVS: ``mqtt_user``/``mqtt_pass`` the identity in use, ``mqtt_user0``/``mqtt_pass0`` the one
before it (the fallback when the broker refuses the new one).
"""

import cryptolib
import schemas as S
from ota import hmac_sha256


def open_password(key, device_id, creds):
    """The password of a ``BrokerCredentials`` dict, or None when it cannot be decrypted."""
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


def take(node, creds):
    """Store a delivered identity (committed), the one in use becoming the fallback; True when
    there is a new one to connect with."""
    st = node.store
    user = creds.get("username", "")
    if not node.key or not user or user == st.text("mqtt_user"):
        return False
    password = open_password(node.key, node.device_id, creds)
    if password is None:
        node.event(
            "credentials_refused",
            "broker credentials for %s cannot be decrypted with this device's key" % user,
            S.SEV_ERROR,
        )
        return False
    _store(st, user, password)
    return True


def swap(st):
    """Make the fallback identity the one in use (and the refused one the fallback); False when
    there is none."""
    user = st.text("mqtt_user0")
    if not user:
        return False
    _store(st, user, st.text("mqtt_pass0"))
    return True


def _store(st, user, password):
    st.set_text("mqtt_user0", st.text("mqtt_user"))
    st.set_text("mqtt_pass0", st.text("mqtt_pass"))
    st.set_text("mqtt_user", user)
    st.set_text("mqtt_pass", password)
    st.commit()
