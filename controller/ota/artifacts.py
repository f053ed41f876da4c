"""Artifacts: verified firmware, stored once by SHA-256 with their metadata in the registry.

Two kinds: ``esp32-app`` (a signed ESP32 application image, images.py) and ``edge-bundle`` (an
edge-agent self-update bundle with its detached Ed25519 signature, bundles.py). Files live in
``DATA/ota/<sha256>.bin`` (written to a temporary file, fsynced, renamed), so the same bytes
uploaded twice are one artifact. The artifact id is ``fw-`` (ESP32) or ``eb-`` (edge bundle)
plus the first 16 hex digits of the SHA-256: short enough to repeat in every block request, and
derived from the content, so two controllers sharing a registry agree on it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from camfleet.controller.ota.bundles import GZIP_MAGIC, check_edge_bundle
from camfleet.controller.ota.images import IMAGE_MAGIC, AppImage, ImageRefused, check_app_image
from camfleet.controller.storage.database import Database, Row
from camfleet.errors import UserError


class NotFound(UserError):
    exit_code = 3


class ArtifactStore:
    def __init__(
        self,
        db: Database,
        directory: Path,
        public_key_pem: bytes | None,
        slot_size: int,
        edge_public_key: Ed25519PublicKey | None = None,
    ):
        self.db = db
        self.dir = Path(directory)
        self.public_key_pem = public_key_pem
        self.slot_size = slot_size
        self.edge_public_key = edge_public_key

    def path(self, sha256: str) -> Path:
        return self.dir / f"{sha256}.bin"

    def add(
        self,
        data: bytes,
        version: str | None = None,
        filename: str = "",
        signature: bytes | None = None,
    ) -> dict[str, Any]:
        """Verify an ESP32 app image, or an edge bundle when ``signature`` is given, and store
        it; the artifact's JSON with ``created`` (False: the same bytes were already stored)."""
        if signature is not None:
            return self._add_bundle(data, version, filename, signature)
        if data[:2] == GZIP_MAGIC:
            raise ImageRefused(
                "this looks like an edge bundle: upload it with its detached Ed25519 signature "
                "(--signature)"
            )
        if self.public_key_pem is None:
            raise ImageRefused(
                "no release public key configured (controller setting ota_public_key): "
                "the controller refuses every image it cannot verify"
            )
        img: AppImage = check_app_image(data, self.public_key_pem, self.slot_size)
        if version and version != img.version:
            raise ImageRefused(
                f"--version {version} does not match the image's own version {img.version} "
                "(esp_app_desc_t): the node reports the latter after the update"
            )
        return self._store(
            data,
            sha256=img.sha256,
            kind="esp32-app",
            version=img.version,
            project=img.project,
            idf_version=img.idf_version,
            chip=img.chip,
            platform="esp32",
            filename=filename,
            signature=None,
        )

    def _add_bundle(
        self, data: bytes, version: str | None, filename: str, signature: bytes
    ) -> dict[str, Any]:
        if data[:1] == bytes([IMAGE_MAGIC]):
            raise ImageRefused(
                "--signature is for edge bundles: ESP32 images carry their signature inside"
            )
        if self.edge_public_key is None:
            raise ImageRefused(
                "no edge release public key configured (controller setting "
                "ota_edge_public_key): the controller refuses every bundle it cannot verify"
            )
        bundle = check_edge_bundle(data, signature, self.edge_public_key)
        if version and version != bundle.version:
            raise ImageRefused(
                f"--version {version} does not match the bundle's manifest version "
                f"{bundle.version}: the agent reports the latter after the update"
            )
        return self._store(
            data,
            sha256=bundle.sha256,
            kind="edge-bundle",
            version=bundle.version,
            project=bundle.name,
            idf_version="",
            chip="",
            platform="linux",
            filename=filename,
            signature=signature,
        )

    def _store(self, data: bytes, **meta: Any) -> dict[str, Any]:
        sha256 = meta["sha256"]
        prefix = "eb-" if meta["kind"] == "edge-bundle" else "fw-"
        with self.db.read() as tx:
            existing = tx.one("SELECT * FROM ota_artifacts WHERE sha256 = ?", (sha256,))
        if existing is not None:
            return {**to_json(existing), "created": False}
        self._write(sha256, data)
        now = int(time.time() * 1000)
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO ota_artifacts (id, sha256, kind, version, project, idf_version, "
                "chip, platform, size, filename, signature, created_ms) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (sha256) DO NOTHING",
                (
                    prefix + sha256[:16],
                    sha256,
                    meta["kind"],
                    meta["version"],
                    meta["project"],
                    meta["idf_version"],
                    meta["chip"],
                    meta["platform"],
                    len(data),
                    meta["filename"],
                    meta["signature"],
                    now,
                ),
            )
            row = tx.one("SELECT * FROM ota_artifacts WHERE sha256 = ?", (sha256,))
        assert row is not None
        return {**to_json(row), "created": True}

    def _write(self, sha256: str, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.path(sha256)
        tmp = final.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(final)

    def get(self, artifact_id: str) -> Row:
        with self.db.read() as tx:
            row: Row | None = tx.one("SELECT * FROM ota_artifacts WHERE id = ?", (artifact_id,))
        if row is None:
            raise NotFound(f"no artifact {artifact_id!r}")
        return row

    def list(self) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            rows = tx.query("SELECT * FROM ota_artifacts ORDER BY created_ms DESC")
        return [to_json(r) for r in rows]

    def remove(self, artifact_id: str) -> None:
        row = self.get(artifact_id)
        with self.db.transaction() as tx:
            busy = tx.scalar(
                "SELECT id FROM ota_rollouts WHERE artifact_id = ? "
                "AND state IN ('running', 'paused', 'gated')",
                (artifact_id,),
            )
            if busy is not None:
                raise UserError(f"artifact {artifact_id} is used by rollout {busy}: abort it first")
            tx.execute("DELETE FROM ota_artifacts WHERE id = ?", (artifact_id,))
        self.path(row["sha256"]).unlink(missing_ok=True)

    def read(self, artifact_id: str) -> tuple[Row, bytes]:
        row = self.get(artifact_id)
        return row, self.path(row["sha256"]).read_bytes()


def to_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sha256": row["sha256"],
        "kind": row["kind"],
        "version": row["version"],
        "project": row["project"],
        "idf_version": row["idf_version"],
        "chip": row["chip"],
        "platform": row["platform"],
        "size": row["size"],
        "filename": row["filename"],
        "signature": bytes(row["signature"]).hex() if row["signature"] is not None else None,
        "created_ms": row["created_ms"],
    }


def set_device_key(db: Database, device_id: str, key: bytes) -> None:
    """The per-device HMAC key provisioned in the node's NVS (``hmac_key``)."""
    if not 16 <= len(key) <= 64:
        raise UserError("a device key must be 16 to 64 bytes")
    now = int(time.time() * 1000)
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO ota_device_keys (device_id, hmac_key, updated_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (device_id) DO UPDATE SET hmac_key = excluded.hmac_key, "
            "updated_ms = excluded.updated_ms",
            (device_id, key, now),
        )
