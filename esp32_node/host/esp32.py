"""Host version of MicroPython's ``esp32`` module (NVS, Partition, wake sources, heap info).

Behaves as the v1.22 ESP32 port does: NVS changes are lost unless committed, a missing key
raises ``OSError(-4354, "ESP_ERR_NVS_NOT_FOUND")`` (esp-idf errors surface negated, with their
name), only RTC GPIOs can be wake pins (``ValueError("invalid pin")``) and ext0 excludes the
touch and ULP wakes (``ValueError("no resources")``), ``writeblocks`` erases the 4 KiB sectors it
writes (whole sectors, else ESP_ERR_INVALID_SIZE; with an offset a write only clears bits, as
NOR flash does), ``set_boot`` verifies the image like esp_image_verify
(ESP_ERR_OTA_VALIDATE_FAILED), partitions are 4096-byte block devices backed by files that
survive "resets", ``set_boot`` writes otadata and the host bootloader (_hostflash) rolls back an
image that rebooted without ``mark_app_valid_cancel_rollback``.
"""

import binascii
import time

import _hostflash as _flash
import _signedapp

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True
HEAP_DATA = 4
HEAP_EXEC = 1

# modesp32.h RTC_VALID_EXT_PINS (ESP32): only RTC GPIOs can wake the chip from deep sleep
RTC_GPIOS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)

# Chip time to erase and program one 4 KiB flash sector: typical SPI NOR figures (sector erase
# ~45 ms, 16 page programs ~10 ms). The harness can change it per device (faults.json).
FLASH_SECTOR_MS = 55

_armed = {}


def _rtc_pin(pin):
    gpio = pin if isinstance(pin, int) else pin.id
    if gpio not in RTC_GPIOS:
        raise ValueError("invalid pin")
    return gpio


def wake_on_ext0(pin=None, level=None):
    # ext0 and the touch/ULP wake share the RTC IO hardware: the port refuses the mix
    if _armed.get("touch"):
        raise ValueError("no resources")
    if pin is None:
        _armed.pop("ext0", None)
        return
    _armed["ext0"] = [_rtc_pin(pin), 1 if level else 0]


def wake_on_ext1(pins=None, level=None):
    if pins is None:
        return
    gpios = [_rtc_pin(p) for p in pins]
    if gpios:
        _armed["ext1"] = [gpios, 1 if level else 0]
    else:
        _armed.pop("ext1", None)


def wake_on_touch(wake):
    if "ext0" in _armed:
        raise ValueError("no resources")
    if wake:
        _armed["touch"] = True
    else:
        _armed.pop("touch", None)


def wake_on_ulp(wake):
    if "ext0" in _armed:
        raise ValueError("no resources")
    if wake:
        _armed["ulp"] = True
    else:
        _armed.pop("ulp", None)


def armed_wake_sources():
    """What deep sleep arms, as the harness sees it: a touch wake with the pads configured
    with a threshold (machine.TouchPad.config), a ULP wake with the program the ULP runs."""
    out = {}
    for k in _armed:
        out[k] = _armed[k]
    if "touch" in out:
        out["touch"] = _flash.read_json("touch.json", {})
    if "ulp" in out and ULP._running is not None:
        import machine

        ulp = dict(ULP._running)
        body = binascii.unhexlify(ulp.pop("body"))
        base = 0x50000000 + ulp["addr"] * 4
        # the data words as the program will find them: what the CPU wrote after the load,
        # else what the binary brought
        ulp["words"] = [
            machine.mem32.words.get(base + 4 * i, int.from_bytes(body[4 * i : 4 * i + 4], "little"))
            for i in range(4)
        ]
        ulp["rtcio"] = dict(("%x" % a, v) for a, v in machine.mem32.words.items() if a < 0x50000000)
        out["ulp"] = ulp
    elif "ulp" in out:
        out["ulp"] = None  # wake_on_ulp(True) without a running program never wakes
    return out


def raw_temperature():
    # the ESP32's internal sensor in Fahrenheit (uncalibrated); the harness may set it
    return int(_flash.fault_value("raw_temperature_f", 128))


def idf_heap_info(capabilities):
    # (total, free, largest free block, minimum free seen) per region, like the ESP32 port.
    if capabilities == HEAP_DATA:
        return [(4 * 1024 * 1024, 3 * 1024 * 1024, 2 * 1024 * 1024, 2 * 1024 * 1024)]
    return [(200 * 1024, 120 * 1024, 90 * 1024, 80 * 1024)]


class ULP:
    """The ULP FSM co-processor as v1.22's esp32_ulp.c drives it (ESP-IDF ulp_load_binary /
    ulp_run): a binary with the "ulp\\0" header is checked and copied into the 2040 bytes of RTC
    slow memory the port reserves (CONFIG_ULP_COPROC_RESERVE_MEM); errors are OSError(esp_err).
    The program is not executed here: the harness decides when the ULP wakes the chip."""

    RESERVE_MEM = 2040
    _loaded = None
    _running = None
    _period_us = None

    def set_wakeup_period(self, period_index, period_us):
        if not 0 <= period_index <= 4:
            raise OSError(258)  # ESP_ERR_INVALID_ARG
        ULP._period_us = period_us

    def load_binary(self, load_addr, program_binary):
        data = bytes(program_binary)
        words = len(data) // 4  # the port passes the length in 32-bit words
        size = words * 4
        if size < 12:
            raise OSError(260)  # ESP_ERR_INVALID_SIZE
        if load_addr * 4 > ULP.RESERVE_MEM:
            raise OSError(258)  # ESP_ERR_INVALID_ARG
        magic = int.from_bytes(data[0:4], "little")
        text_off = int.from_bytes(data[4:6], "little")
        text = int.from_bytes(data[6:8], "little")
        data_size = int.from_bytes(data[8:10], "little")
        bss = int.from_bytes(data[10:12], "little")
        if magic != 0x00706C75:  # "ulp\0"
            raise OSError(95)  # ESP_ERR_NOT_SUPPORTED -> EOPNOTSUPP
        if text_off + text + data_size != size:
            raise OSError(260)
        if load_addr * 4 + text + data_size + bss > ULP.RESERVE_MEM:
            raise OSError(260)
        ULP._loaded = {"addr": load_addr, "text": text, "data": data_size, "bss": bss,
                       "body": binascii.hexlify(data[text_off:]).decode()}  # fmt: skip

    def run(self, entry_point):
        if ULP._loaded is None:
            raise OSError(258)  # nothing loaded: the ULP would run whatever RTC memory holds
        if entry_point % 4 or entry_point // 4 >= ULP._loaded["text"] // 4:
            raise OSError(258)
        ULP._running = {"entry": entry_point, "period_us": ULP._period_us}
        ULP._running.update(ULP._loaded)


def _esp_err(code, name):
    return OSError(-code, name)  # mphalport.c check_esp_err: negated esp_err_t + its name


def _nvs_not_found():
    return _esp_err(0x1102, "ESP_ERR_NVS_NOT_FOUND")


class NVS:
    """One NVS namespace; set_* stage changes, commit() makes them survive a reset."""

    def __init__(self, namespace):
        if not 0 < len(namespace) <= 15:
            raise ValueError("namespace must be 1..15 characters")
        self._file = "nvs/" + namespace + ".json"
        self._committed = _flash.read_json(self._file, {})
        self._pending = dict(self._committed)

    @staticmethod
    def _check_key(key):
        if not 0 < len(key) <= 15:
            raise _esp_err(0x1109, "ESP_ERR_NVS_KEY_TOO_LONG")
        # faults.json {"nvs_full:<key>": n}: the next n writes of that key find the NVS
        # partition full, as on a board whose NVS pages are used up (per key: a wake writes
        # its session counter first, and a test aims at one write)
        if _flash.take_fault("nvs_full:" + key):
            raise _esp_err(0x1105, "ESP_ERR_NVS_NOT_ENOUGH_SPACE")

    def set_i32(self, key, value):
        self._check_key(key)
        if not -(1 << 31) <= value < (1 << 31):
            raise OverflowError("value out of range for i32")
        self._pending[key] = ["i", value]

    def get_i32(self, key):
        entry = self._pending.get(key)
        if entry is None or entry[0] != "i":
            raise _nvs_not_found()
        return entry[1]

    def set_blob(self, key, value):
        self._check_key(key)
        if len(value) > 508000:
            raise _esp_err(0x110E, "ESP_ERR_NVS_VALUE_TOO_LONG")
        self._pending[key] = ["b", binascii.hexlify(bytes(value)).decode()]

    def get_blob(self, key, buffer):
        entry = self._pending.get(key)
        if entry is None or entry[0] != "b":
            raise _nvs_not_found()
        data = binascii.unhexlify(entry[1])
        if len(buffer) < len(data):
            raise _esp_err(0x110C, "ESP_ERR_NVS_INVALID_LENGTH")
        buffer[: len(data)] = data
        return len(data)

    def erase_key(self, key):
        if key not in self._pending:
            raise _nvs_not_found()
        del self._pending[key]

    def commit(self):
        _flash.write_json(self._file, self._pending)
        self._committed = dict(self._pending)


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096):
        if id == Partition.RUNNING:
            label = _flash.RUNNING_SLOT
        elif id == Partition.BOOT:
            label = _boot_slot()
        else:
            label = id
        row = None
        for r in _flash.partitions():
            if r[0] == label:
                row = r
        if row is None:
            raise ValueError("partition not found")
        self._label, ptype, self._subtype, self._offset, self._size = row
        self._type = Partition.TYPE_APP if ptype == "app" else Partition.TYPE_DATA
        self._bs = block_size
        self._file = _flash.path("flash", self._label + ".bin")

    @staticmethod
    def find(type=TYPE_APP, subtype=0xFF, label=None, block_size=4096):
        found = []
        for r in _flash.partitions():
            is_app = r[1] == "app"
            if (type == Partition.TYPE_APP) != is_app:
                continue
            if label is not None and r[0] != label:
                continue
            found.append(Partition(r[0], block_size))
        return found

    def info(self):
        subtype = _SUBTYPES.get(self._subtype, 0)
        return (self._type, subtype, self._offset, self._size, self._label, False)

    def __repr__(self):
        return "<Partition type=%d, subtype=%s, address=%d, size=%d, label=%s>" % (
            self._type,
            self._subtype,
            self._offset,
            self._size,
            self._label,
        )

    def _open(self):
        if not _flash.exists(self._file):
            with open(self._file, "wb"):
                pass
        return open(self._file, "r+b")

    def readblocks(self, block_num, buf, offset=0):
        pos = block_num * self._bs + offset
        if pos + len(buf) > self._size:
            raise _esp_err(0x104, "ESP_ERR_INVALID_SIZE")
        with self._open() as f:
            f.seek(pos)
            got = f.readinto(buf) or 0
        for i in range(got, len(buf)):
            buf[i] = 0xFF  # erased flash reads as FF

    def writeblocks(self, block_num, buf, offset=None):
        """Without ``offset``: erase the sectors, then write (v1.22 esp32_partition.c), so the
        length must be whole 4 KiB sectors. With ``offset``: a plain NOR-flash write, which can
        only clear bits (the caller erased first with ioctl 6)."""
        pos = block_num * self._bs + (offset or 0)
        if pos + len(buf) > self._size:
            raise _esp_err(0x104, "ESP_ERR_INVALID_SIZE")
        with self._open() as f:
            if offset is None:
                if len(buf) % 4096:  # esp_partition_erase_range: whole sectors only
                    raise _esp_err(0x104, "ESP_ERR_INVALID_SIZE")
                f.seek(pos)
                f.write(buf)
            else:
                f.seek(pos)
                old = f.read(len(buf))
                old = old + b"\xff" * (len(buf) - len(old))  # past the file end: erased
                f.seek(pos)
                f.write(bytes(a & b for a, b in zip(old, bytes(buf))))
        # the chip time the write costs (erase + program of each 4 KiB sector touched)
        sectors = (pos + len(buf) + 4095) // 4096 - pos // 4096
        time.spend_ms(sectors * _flash.fault_value("flash_sector_ms", FLASH_SECTOR_MS))

    def ioctl(self, cmd, arg):
        if cmd == 4:  # block count
            return self._size // self._bs
        if cmd == 5:  # block size
            return self._bs
        if cmd == 6:  # erase block
            with self._open() as f:
                f.seek(arg * self._bs)
                f.write(b"\xff" * self._bs)
            return 0
        return 0

    def get_next_update(self):
        slots = _flash.app_slots()
        i = slots.index(self._label)
        return Partition(slots[(i + 1) % len(slots)])

    def set_boot(self):
        slots = _flash.app_slots()
        if self._label not in slots:
            raise _esp_err(0x102, "ESP_ERR_INVALID_ARG")
        if not self._image_valid():
            raise _esp_err(0x1503, "ESP_ERR_OTA_VALIDATE_FAILED")
        refused = _signedapp.check_update(self, Partition(Partition.RUNNING))
        if refused:
            # the signed-app step of the same verification; ESP-IDF logs why, returns the code
            print("E secure_boot_v2: " + refused)
            raise _esp_err(0x1503, "ESP_ERR_OTA_VALIDATE_FAILED")
        data = _flash.read_json("otadata.json", None) or [[0, _flash.OTA_UNDEFINED]] * 2
        top = 0
        for e in data:
            if e[0] != _flash.OTA_UNDEFINED and e[0] > top:
                top = e[0]
        slot = slots.index(self._label)
        seq = top + 1
        while (seq - 1) % len(slots) != slot:
            seq += 1
        # the sector to overwrite alternates like ESP-IDF's (seq - 1) % 2
        data[(seq - 1) % 2] = [seq, _flash.OTA_NEW]
        _flash.write_json("otadata.json", data)

    def _image_valid(self):
        """esp_image_verify for an ESP32 app: magic 0xE9, chip id ESP32, at most 16 segments
        inside the partition, the XOR checksum (seed 0xEF) in the last byte of the 16-byte
        aligned block after them and, when the header says so, the SHA-256 of all of that."""
        import hashlib

        with self._open() as f:
            head = f.read(24)
            if len(head) < 24 or head[0] != 0xE9 or head[1] > 16:
                return False
            if int.from_bytes(head[12:14], "little") != 0:  # esp_chip_id_t ESP32
                return False
            h = hashlib.sha256(head)
            acc = 0  # XOR of the segments' bytes, folded from wide words at the end
            pos = 24
            for _ in range(head[1]):
                seg = f.read(8)
                if len(seg) < 8:
                    return False
                h.update(seg)
                left = int.from_bytes(seg[4:8], "little")
                pos += 8 + left
                if pos > self._size:
                    return False
                while left:
                    chunk = f.read(min(4096, left))
                    if not chunk:
                        return False
                    h.update(chunk)
                    acc ^= int.from_bytes(chunk, "little")
                    left -= len(chunk)
            tail = f.read(15 - pos % 16 + 1)
            if len(tail) != 15 - pos % 16 + 1:
                return False
            h.update(tail)
            checksum = 0xEF
            for b in acc.to_bytes(4096, "little"):
                checksum ^= b
            if tail[-1] != checksum:
                return False
            if head[23] == 1 and f.read(32) != h.digest():  # hash_appended
                return False
        return True

    @staticmethod
    def mark_app_valid_cancel_rollback():
        data = _flash.read_json("otadata.json", None)
        if not data:
            return  # factory boot: nothing pending
        slots = _flash.app_slots()
        for entry in data:
            seq = entry[0]
            if seq and seq != _flash.OTA_UNDEFINED:
                if slots[(seq - 1) % len(slots)] == _flash.RUNNING_SLOT:
                    if entry[1] == _flash.OTA_PENDING_VERIFY:
                        entry[1] = _flash.OTA_VALID
        _flash.write_json("otadata.json", data)


_SUBTYPES = {
    "ota_0": 0x10,
    "ota_1": 0x11,
    "nvs": 0x02,
    "ota": 0x00,
    "phy": 0x01,
    "fat": 0x81,
    "spiffs": 0x82,
    "littlefs": 0x83,
}


def _boot_slot():
    data = _flash.read_json("otadata.json", None)
    slots = _flash.app_slots()
    if not data:
        return slots[0]
    best = None
    for seq, state in data:
        if (
            seq
            and seq != _flash.OTA_UNDEFINED
            and state not in (_flash.OTA_INVALID, _flash.OTA_ABORTED)
        ):
            if best is None or seq > best:
                best = seq
    return slots[(best - 1) % len(slots)] if best else slots[0]
