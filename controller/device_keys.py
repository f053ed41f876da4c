"""Per-device secret keys, kept in the registry (table ``ota_device_keys``).

One key per device, the one provisioned into it (ESP32 NVS ``hmac_key``, edge.toml
``[device] key``): the controller signs with it what the device acts on (receipts, commands,
desired config: controller/signing.py) and its OTA offers (controller/ota/). ``camfleet device
add`` creates it, ``camfleet device rm`` deletes it, ``camfleet ota key`` / ``PUT
/api/v1/ota/device-keys/{id}`` set one a device already has. A device without a key is sent
nothing signed; a device with a key refuses anything unsigned.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from camfleet.controller import registry
from camfleet.controller.ota.artifacts import set_device_key
from camfleet.controller.storage import open_database
from camfleet.controller.storage.database import Database
from camfleet.controller.storage.migrations import migrate
from camfleet.proto.topics import validate_device_id

KEY_BYTES = 32


class DeviceKeys:
    """``cache_s``: how long a key found in the registry is reused. The controller signs every
    receipt batch, command and desired config, and one registry read costs ~0.1 ms (SQLite) or
    a round trip (PostgreSQL), on the thread that publishes receipts. Only keys found are kept:
    a device enrolled by another process (the CLI, the simulator) is signed for from its first
    message on; a key replaced by another process is used within ``cache_s`` (meanwhile the
    device refuses what it cannot verify, and frames are re-sent); changes made through this
    object apply at once."""

    def __init__(self, db: Database, cache_s: float = 0.0) -> None:
        self.db = db
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, bytes]] = {}  # one entry per device at most
        self._lock = threading.Lock()
        self._local = threading.local()  # .batch: {device: key or None} inside batch()

    @contextmanager
    def batch(self, device_ids: Iterable[str]) -> Iterator[None]:
        """Inside the block, ``get`` on this thread answers for these devices from ONE query.

        For publishing to many devices at once (a group command, a batch's receipts): a read
        per device (~0.1 ms each, a transaction with its own locks) made signing most of the
        cost of a 5,000-device fan-out. The keys are read when the block starts, as fresh as
        per-message reads would be; absent keys are not remembered after it.
        """
        wanted = list(dict.fromkeys(device_ids))
        if not wanted:
            yield
            return
        found: dict[str, bytes | None] = dict.fromkeys(wanted)
        with self.db.read() as tx:
            for i in range(0, len(wanted), 500):
                part = wanted[i : i + 500]
                for row in tx.query(
                    "SELECT device_id, hmac_key FROM ota_device_keys WHERE device_id IN ("
                    + ",".join("?" * len(part))
                    + ")",
                    part,
                ):
                    found[row["device_id"]] = bytes(row["hmac_key"])
        outer = getattr(self._local, "batch", None)
        self._local.batch = found if outer is None else {**outer, **found}
        try:
            yield
        finally:
            self._local.batch = outer

    def get(self, device_id: str) -> bytes | None:
        batch = getattr(self._local, "batch", None)
        if batch is not None and device_id in batch:
            return batch[device_id]  # type: ignore[no-any-return]
        now = time.monotonic()
        if self.cache_s:
            with self._lock:
                hit = self._cache.get(device_id)
            if hit is not None and now - hit[0] < self.cache_s:
                return hit[1]
        with self.db.read() as tx:
            value = tx.scalar(
                "SELECT hmac_key FROM ota_device_keys WHERE device_id = ?", (device_id,)
            )
        key = bytes(value) if value is not None else None
        if self.cache_s and key is not None:
            with self._lock:
                self._cache[device_id] = (now, key)
        return key

    def put(self, device_id: str, key: bytes) -> None:
        """Store a key the device already has (16 to 64 bytes)."""
        set_device_key(self.db, validate_device_id(device_id), key)
        self._forget(device_id)

    def create(self, device_id: str) -> bytes:
        """A new random key for the device, replacing any previous one."""
        key = secrets.token_bytes(KEY_BYTES)
        self.put(device_id, key)
        return key

    def delete(self, device_id: str) -> bool:
        """Revocation (``camfleet device rm``): the key goes, and the registry shows the device
        offline (:func:`registry.revoked`) in the same transaction."""
        with self.db.transaction() as tx:
            gone = tx.execute("DELETE FROM ota_device_keys WHERE device_id = ?", (device_id,))
            registry.revoked(tx, device_id, int(time.time() * 1000))
        self._forget(device_id)
        return bool(gone)

    def _forget(self, device_id: str) -> None:
        with self._lock:
            self._cache.pop(device_id, None)


@contextmanager
def registry_keys(data: Path, database: str = "") -> Iterator[DeviceKeys]:
    """The keys of the controller whose data directory (and registry URL, if not the SQLite
    file in it) are given: for the CLI, which may run while the controller does."""
    Path(data).mkdir(parents=True, exist_ok=True)
    db = open_database(database, Path(data) / "registry.sqlite3")
    try:
        migrate(db)
        yield DeviceKeys(db)
    finally:
        db.close()
