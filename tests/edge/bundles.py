"""Self-update bundles for tests: this checkout's camfleet package under another version."""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import camfleet
import camfleet.edge
import camfleet.proto
from camfleet.edge import update

#: The fleet's release key (tests): agents trust its public half.
RELEASE = Ed25519PrivateKey.generate()


def payload(version: str, broken: bool = False) -> dict[str, bytes]:
    """camfleet, camfleet.edge and camfleet.proto of this checkout with ``__version__ =
    version`` (the birth then tells which slot runs); ``broken``: captures raise, which fails
    the health check."""
    files: dict[str, bytes] = {}
    for pkg, prefix in (
        (camfleet, "camfleet"),
        (camfleet.edge, "camfleet/edge"),
        (camfleet.proto, "camfleet/proto"),
    ):
        root = Path(pkg.__path__[0])
        for f in root.rglob("*.py"):
            if "__pycache__" not in f.parts:
                files[f"{prefix}/{f.relative_to(root).as_posix()}"] = f.read_bytes()
    init = files["camfleet/__init__.py"].decode()
    files["camfleet/__init__.py"] = re.sub(
        r'__version__ = ".*"', f'__version__ = "{version}"', init
    ).encode()
    if broken:
        agent = files["camfleet/edge/agent.py"].decode()
        needle = "cap = self.camera.capture(settings)"
        assert needle in agent
        files["camfleet/edge/agent.py"] = agent.replace(
            needle, 'raise CameraError("this build cannot capture")'
        ).encode()
    return files


def write_bundle(tmp_path: Path, version: str, key=RELEASE, broken=False) -> tuple[Path, Path]:
    data = update.make_bundle(version, payload(version, broken))
    bundle, sig = tmp_path / f"camfleet-{version}.tar.gz", tmp_path / f"{version}.sig"
    bundle.write_bytes(data)
    sig.write_bytes(update.sign(key, data)[1])
    return bundle, sig
