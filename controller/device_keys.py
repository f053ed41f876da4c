"""Per-device secret keys: DATA/device-keys/<device id>.key, 32 raw bytes, mode 0600.

``camfleet device add`` writes a device's key here and into the device's own configuration;
``camfleet device rm`` deletes it. The controller signs what a device acts on (receipts,
commands, desired config, OTA offers) with it; a device without a key here is sent nothing
signed, and a device with a key refuses anything unsigned.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from camfleet.proto.topics import validate_device_id

KEY_BYTES = 32


class DeviceKeys:
    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / "device-keys"

    def _path(self, device_id: str) -> Path:
        return self.folder / f"{validate_device_id(device_id)}.key"

    def get(self, device_id: str) -> bytes | None:
        try:
            return self._path(device_id).read_bytes()
        except FileNotFoundError:
            return None

    def create(self, device_id: str) -> bytes:
        """A new random key for the device, replacing any previous one."""
        key = secrets.token_bytes(KEY_BYTES)
        self.put(device_id, key)
        return key

    def put(self, device_id: str, key: bytes) -> None:
        """Store a key the device already has (e.g. provisioned before the controller ran)."""
        if len(key) < 16:
            raise ValueError("a device key has at least 16 bytes")
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(device_id)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def delete(self, device_id: str) -> bool:
        try:
            self._path(device_id).unlink()
        except FileNotFoundError:
            return False
        return True
