"""Checks of an uploaded edge-agent self-update bundle, with the agent's own verifier.

A bundle (docs/edge.md "Self-update") is a tar.gz with ``manifest.json`` and ``payload/``; the
release key signs the SHA-256 of the whole file with Ed25519 and the signature travels beside
it. The controller holds only the release *public* key (``ota_edge_public_key``, the same value
as the agents' ``[agent] update_public_key``) and runs exactly the check the agent runs before
it installs anything (camfleet.edge.update.verify), so a bundle the fleet would refuse is never
stored or offered. The agent checks again after the download: the controller is not trusted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from camfleet.controller.ota.images import ImageRefused
from camfleet.edge import update
from camfleet.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class EdgeBundle:
    name: str
    version: str
    sha256: str


def load_edge_public_key(text: str) -> Ed25519PublicKey | None:
    """The ``ota_edge_public_key`` setting (base64 of the raw 32 bytes); None when unset."""
    if not text.strip():
        return None
    try:
        return update.load_public_key(text)
    except ValueError as exc:
        raise UserError(f"ota_edge_public_key: {exc}") from None


def check_edge_bundle(data: bytes, signature: bytes, key: Ed25519PublicKey) -> EdgeBundle:
    """Verify a bundle and its detached signature; ImageRefused says why it is not acceptable."""
    if len(signature) != SIGNATURE_BYTES:
        raise ImageRefused(
            f"an Ed25519 signature is {SIGNATURE_BYTES} bytes, this one is {len(signature)}"
        )
    if data[:2] != GZIP_MAGIC:
        raise ImageRefused("not an edge bundle (no gzip header)")
    digest = hashlib.sha256(data).digest()
    try:
        manifest, _files = update.verify(data, digest, signature, key)
    except update.UpdateError as exc:
        why = str(exc).replace("[agent] update_public_key", "ota_edge_public_key")
        raise ImageRefused(why) from None
    return EdgeBundle(manifest.name, manifest.version, digest.hex())
