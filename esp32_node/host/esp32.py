"""Host version of MicroPython's ``esp32`` module (NVS, Partition, wake sources, heap info).

Behaves as the ESP32 port documents it: NVS changes are lost unless committed, a missing key
raises OSError (ENOENT), partitions are 4096-byte block devices backed by files that survive
"resets", ``set_boot`` writes otadata and the host bootloader (_hostflash) rolls back an image
that rebooted without ``mark_app_valid_cancel_rollback``.
"""

import binascii
import time

import _hostflash as _flash

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True
HEAP_DATA = 4
HEAP_EXEC = 1

# Chip time to erase and program one 4 KiB flash sector: typical SPI NOR figures (sector erase
# ~45 ms, 16 page programs ~10 ms). The harness can change it per device (faults.json).
FLASH_SECTOR_MS = 55

_armed = {}


def wake_on_ext0(pin, level):
    _armed["ext0"] = [_pin_id(pin), int(level)]


def wake_on_ext1(pins, level):
    _armed["ext1"] = [[_pin_id(p) for p in pins], int(level)]


def wake_on_touch(wake):
    _armed["touch"] = bool(wake)


def wake_on_ulp(wake):
    _armed["ulp"] = bool(wake)


def _pin_id(pin):
    return pin if isinstance(pin, int) else pin.id


def armed_wake_sources():
    return dict(_armed)


def raw_temperature():
    # the ESP32's internal sensor in Fahrenheit (uncalibrated); the harness may set it
    return int(_flash.fault_value("raw_temperature_f", 128))


def idf_heap_info(capabilities):
    # (total, free, largest free block, minimum free seen) per region, like the ESP32 port.
    if capabilities == HEAP_DATA:
        return [(4 * 1024 * 1024, 3 * 1024 * 1024, 2 * 1024 * 1024, 2 * 1024 * 1024)]
    return [(200 * 1024, 120 * 1024, 90 * 1024, 80 * 1024)]


class ULP:
    def set_wakeup_period(self, period_index, period_us):
        pass

    def load_binary(self, load_addr, program_binary):
        pass

    def run(self, entry_point):
        pass


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
            raise OSError(22)  # ESP_ERR_NVS_KEY_TOO_LONG surfaces as OSError

    def set_i32(self, key, value):
        self._check_key(key)
        if not -(1 << 31) <= value < (1 << 31):
            raise OverflowError("value out of range for i32")
        self._pending[key] = ["i", value]

    def get_i32(self, key):
        entry = self._pending.get(key)
        if entry is None or entry[0] != "i":
            raise OSError(2)  # ESP_ERR_NVS_NOT_FOUND -> ENOENT
        return entry[1]

    def set_blob(self, key, value):
        self._check_key(key)
        if len(value) > 508000:
            raise OSError(22)
        self._pending[key] = ["b", binascii.hexlify(bytes(value)).decode()]

    def get_blob(self, key, buffer):
        entry = self._pending.get(key)
        if entry is None or entry[0] != "b":
            raise OSError(2)
        data = binascii.unhexlify(entry[1])
        if len(buffer) < len(data):
            raise OSError(22)  # ESP_ERR_NVS_INVALID_LENGTH
        buffer[: len(data)] = data
        return len(data)

    def erase_key(self, key):
        if key not in self._pending:
            raise OSError(2)
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
            raise OSError(22)
        with self._open() as f:
            f.seek(pos)
            got = f.readinto(buf) or 0
        for i in range(got, len(buf)):
            buf[i] = 0xFF  # erased flash reads as FF

    def writeblocks(self, block_num, buf, offset=0):
        pos = block_num * self._bs + offset
        if pos + len(buf) > self._size:
            raise OSError(22)
        with self._open() as f:
            f.seek(pos)
            f.write(buf)
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
            raise OSError(22)
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
