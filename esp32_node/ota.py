"""OTA, node side of the block protocol (ota.proto): offer -> blocks -> verify -> boot -> confirm.

Progress lives in NVS (``ota_offer``: the accepted offer; ``ota_bits``: bitmap of blocks written)
so a reset, a power cut or a deep sleep resumes where it stopped. Every block is checked against
its own SHA-256 (a corrupted one is simply asked for again); the whole image is read back from
flash and checked against the offer's SHA-256 and HMAC-SHA256(device key, digest) before
``set_boot``. ``ota_pend`` remembers the switch across the reboot: the new image confirms itself
(``mark_app_valid_cancel_rollback``) only after its health check, else the bootloader rolls back
and the old image reports it.
"""

import hashlib

import esp32
import firmware_info
import pb
from schemas import OTA_BLOCK, OTA_OFFER, SCHEME_HMAC_SHA256

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy only: MicroPython has no typing module
    from typing import Any  # noqa: F401  (used in type comments)

SECTOR = 4096
WINDOW = 8  # blocks asked for at once: 8 x 4 KiB in flight stays far below the heap
PEND = (
    (1, "artifact_id", "S", 0),
    (2, "version", "S", 0),
    (3, "slot", "S", 0),
    (4, "from", "S", 0),
    (5, "command_id", "S", 0),
)


def hmac_sha256(key, msg):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def equal(a, b):
    """Constant-time comparison of two digests."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


class OtaError(Exception):
    pass


class Ota:
    def __init__(self, store, device_key):
        self.store = store
        self.key = device_key
        self.offer = None  # type: Any
        self.command_id = ""
        self.bits = None  # type: Any
        self.part = None  # type: Any
        self.blocks = 0
        self.corrupted = 0  # blocks refused for a bad SHA-256 (they stay missing, asked again)
        self.responses = 0  # blocks of this artifact received this wake, good or not
        raw = store.blob("ota_offer")
        if raw:
            try:
                self._load(raw, store.blob("ota_bits"))
            except Exception:
                self.clear()  # an unreadable record must not block every future update

    # --- offer --------------------------------------------------------------------------

    def check_offer(self, offer):
        """Return a refusal reason, or None when the offer is acceptable."""
        if offer.get("platform", "esp32") not in ("esp32", ""):
            return "platform %s is not esp32" % offer.get("platform")
        if offer.get("scheme", 0) != SCHEME_HMAC_SHA256:
            return "signature scheme %d unsupported (HMAC-SHA256 only)" % offer.get("scheme", 0)
        if len(offer.get("sha256", b"")) != 32:
            return "sha256 must be 32 bytes"
        bs = offer.get("block_size", 0)
        if bs <= 0 or bs % SECTOR:
            return "block_size %d is not a multiple of %d" % (bs, SECTOR)
        size = offer.get("size", 0)
        if size <= 0:
            return "empty image"
        running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]
        room = running.get_next_update().info()[3]
        if size > room:
            return "image of %d bytes does not fit the %d-byte partition" % (size, room)
        if not self.key:
            return "no device key provisioned"
        if not equal(hmac_sha256(self.key, offer["sha256"]), offer.get("signature", b"")):
            return "bad signature"
        return None

    def accept(self, offer, command_id):
        raw = pb.encode(OTA_OFFER, offer)
        same = self.offer is not None and self.offer.get("sha256") == offer.get("sha256")
        if not same:
            self._load(bytes(raw), None)
        self.command_id = command_id
        self._persist(True)

    def _load(self, raw, bits):
        self.offer = pb.decode(OTA_OFFER, raw)
        self.part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()  # type: ignore[arg-type]
        bs = self.offer["block_size"]
        self.blocks = (self.offer["size"] + bs - 1) // bs
        nbytes = (self.blocks + 7) // 8
        self.bits = bytearray(bits) if bits and len(bits) == nbytes else bytearray(nbytes)
        self.command_id = self.store.text("ota_cmd", "")

    def _persist(self, with_offer):
        if with_offer:
            self.store.set_blob("ota_offer", pb.encode(OTA_OFFER, self.offer))
            self.store.set_text("ota_cmd", self.command_id)
        self.store.set_blob("ota_bits", bytes(self.bits))
        self.store.commit()

    def clear(self):
        for k in ("ota_offer", "ota_bits", "ota_cmd"):
            self.store.erase(k)
        self.store.commit()
        self.offer = None
        self.bits = None

    @property
    def active(self):
        return self.offer is not None

    # --- blocks -------------------------------------------------------------------------

    def have(self, i):
        return self.bits[i >> 3] & (1 << (i & 7))

    def done_count(self):
        n = 0
        for i in range(self.blocks):
            if self.have(i):
                n += 1
        return n

    def missing_window(self):
        """(first_block, count, wanted bitmap) of the next blocks to ask for, or None."""
        first = None
        for i in range(self.blocks):
            if not self.have(i):
                first = i
                break
        if first is None:
            return None
        count = min(WINDOW, self.blocks - first)
        wanted = bytearray((count + 7) // 8)
        for j in range(count):
            if not self.have(first + j):
                wanted[j >> 3] |= 1 << (j & 7)
        return first, count, bytes(wanted)

    def on_block(self, payload):
        """Write one OtaBlock; returns True when it was new and good, False when ignored."""
        msg = pb.decode(OTA_BLOCK, payload)
        if self.offer is None or msg.get("artifact_id") != self.offer["artifact_id"]:
            return False
        self.responses += 1
        i = msg.get("index", 0)
        data = msg.get("data", b"")
        if i >= self.blocks or self.have(i):
            return False
        bs = self.offer["block_size"]
        expect = min(bs, self.offer["size"] - i * bs)
        if len(data) != expect or not equal(hashlib.sha256(data).digest(), msg.get("sha256", b"")):
            self.corrupted += 1
            return False
        if len(data) % SECTOR:
            data = data + b"\xff" * (SECTOR - len(data) % SECTOR)
        self.part.writeblocks(i * bs // SECTOR, data)
        self.bits[i >> 3] |= 1 << (i & 7)
        self._persist(False)
        return True

    # --- verify and switch ----------------------------------------------------------------

    def verify(self):
        """Read the image back from flash; raise OtaError unless SHA-256 and HMAC match."""
        h = hashlib.sha256()
        buf = bytearray(SECTOR)
        size = self.offer["size"]
        left = size
        block = 0
        while left > 0:
            self.part.readblocks(block, buf)
            if block == 0:
                if (
                    buf[0] != firmware_info.IMAGE_MAGIC
                    or firmware_info.chip_id(buf) != firmware_info.CHIP_ID_ESP32
                ):
                    raise OtaError("not an ESP32 app image")
            n = min(SECTOR, left)
            h.update(buf if n == SECTOR else buf[:n])
            left -= n
            block += 1
        digest = h.digest()
        if not equal(digest, self.offer["sha256"]):
            self.bits = bytearray(len(self.bits))  # flash content is wrong: fetch everything again
            self._persist(False)
            raise OtaError("sha256 mismatch after read-back")
        if not equal(hmac_sha256(self.key, digest), self.offer.get("signature", b"")):
            raise OtaError("bad signature")

    def switch(self, running_slot, running_version):
        """Set the new partition to boot and remember the switch for the next boot.

        ``set_boot`` runs ESP-IDF's image verification, including the signed-app check on
        update (the release key's RSA signature): a refusal leaves the old app booting.
        """
        try:
            self.part.set_boot()
        except OSError as e:  # OSError(-code, "ESP_ERR_...") from check_esp_err
            raise OtaError("refused by the boot verification: %s" % e.args[-1])
        pend = {
            "artifact_id": self.offer["artifact_id"],
            "version": self.offer.get("version", ""),
            "slot": self.part.info()[4],
            "from": running_version,
            "command_id": self.command_id,
        }
        self.store.set_blob("ota_pend", pb.encode(PEND, pend))
        for k in ("ota_offer", "ota_bits", "ota_cmd"):
            self.store.erase(k)
        self.store.commit()
        self.offer = None


def pending(store):
    raw = store.blob("ota_pend")
    return pb.decode(PEND, raw) if raw else None


def confirm(store):
    """First boot of a new image passed its health check: cancel the rollback."""
    esp32.Partition.mark_app_valid_cancel_rollback()
    store.erase("ota_pend")
    store.commit()
