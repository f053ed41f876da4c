"""Host emulation of ESP-IDF's signed-app check on update (MicroPython; host port only).

With ``CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT`` and the Secure Boot V2 RSA scheme
(esp32_node/firmware/sdkconfig.camfleet), ``esp_ota_set_boot_partition`` refuses an image whose
signature block does not verify with a key of the *running* app's own signature block; the chip
then keeps booting the old app. This module does the same check in Python so the simulated
fleet cannot be flashed by whoever can publish an offer: image length from the app header, the
signature sector at the next 4 KiB boundary, its block CRC, the image digest, the RSA-PSS
(SHA-256, salt 32) signature, and the key against the running app's. A running app without a
signature sector is firmware built without signed apps: then nothing is checked, as on a chip.
"""

import binascii
import hashlib
import struct

SECTOR = 4096
SIG_BLOCK = 1216
KEY_AT, KEY_LEN = 36, 384 + 4 + 384 + 4  # n, e, rinv, m' (what ESP-IDF digests as the key)


def _read(part, offset, n):
    buf = bytearray(n)
    part.readblocks(offset // SECTOR, buf, offset % SECTOR)
    return bytes(buf)


def app_length(part):
    """Bytes of the app image in ``part`` (header, segments, checksum, digest), or None."""
    head = _read(part, 0, 24)
    if head[0] != 0xE9:
        return None
    pos = 24
    for _ in range(head[1]):
        length = struct.unpack("<I", _read(part, pos + 4, 4))[0]
        pos += 8 + length
        if pos > part.info()[3]:
            return None
    pos = (pos + 1 + 15) // 16 * 16
    if head[23]:
        pos += 32
    return pos


def signature_block(part):
    """(block, signed length) of the app in ``part``, or (None, 0) when it has none."""
    length = app_length(part)
    if length is None:
        return None, 0
    signed = (length + SECTOR - 1) // SECTOR * SECTOR
    if signed + SECTOR > part.info()[3]:
        return None, 0
    blk = _read(part, signed, SIG_BLOCK)
    if blk[0] != 0xE7 or blk[1] != 0x02:
        return None, 0
    if binascii.crc32(blk[:1196]) & 0xFFFFFFFF != struct.unpack("<I", blk[1196:1200])[0]:
        return None, 0
    return blk, signed


def _mgf1(seed, length):
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + struct.pack(">I", counter)).digest()
        counter += 1
    return out[:length]


def _pss_ok(blk, digest):
    n = int.from_bytes(blk[KEY_AT : KEY_AT + 384], "little")
    e = struct.unpack("<I", blk[KEY_AT + 384 : KEY_AT + 388])[0]
    sig = int.from_bytes(blk[812:1196], "little")
    if sig >= n:
        return False
    em = pow(sig, e, n).to_bytes(384, "big")  # emBits 3071: one leading zero bit
    if em[-1] != 0xBC or em[0] & 0x80:
        return False
    masked, h = em[:351], em[351:383]
    db = bytearray(a ^ b for a, b in zip(masked, _mgf1(h, 351)))
    db[0] &= 0x7F
    pad = 351 - 32 - 1
    if any(db[:pad]) or db[pad] != 1:
        return False
    salt = bytes(db[pad + 1 :])
    return hashlib.sha256(b"\x00" * 8 + digest + salt).digest() == h


def check_update(new_part, running_part):
    """None when ``new_part`` may boot; else why the emulated chip refuses it."""
    trusted, _ = signature_block(running_part)
    if trusted is None:
        return None  # running firmware built without signed apps
    blk, signed = signature_block(new_part)
    if blk is None:
        return "image has no valid signature block"
    h = hashlib.sha256()
    done = 0
    while done < signed:
        n = min(SECTOR, signed - done)
        h.update(_read(new_part, done, n))
        done += n
    digest = h.digest()
    if blk[4:36] != digest:
        return "signature block does not match the image"
    if (
        hashlib.sha256(blk[KEY_AT : KEY_AT + KEY_LEN]).digest()
        != hashlib.sha256(trusted[KEY_AT : KEY_AT + KEY_LEN]).digest()
    ):
        return "image signed by a key the running app does not trust"
    if not _pss_ok(blk, digest):
        return "bad RSA-PSS signature"
    return None
