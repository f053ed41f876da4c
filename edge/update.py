"""Edge-agent self-update, device side: verify a signed bundle, install it into slot A or B of
the state dir, and decide at each start which slot runs.

Bundle format (docs/edge.md "Self-update bundles"): a gzip'd tar holding ``manifest.json``
(``{"name": "camfleet", "version": "..."}``) and a ``payload/`` tree that the launcher puts
first on ``sys.path`` (a full ``camfleet`` package, or a wheel unpacked). The release key signs
the SHA-256 of the whole bundle file with Ed25519, the same digest the controller's
``OtaOffer.sha256`` carries (scheme ED25519), so the signature covers the manifest and every
payload byte; the agent checks the digest, then the signature with ``[agent]
update_public_key``, before it unpacks anything.

Slot state (``<state_dir>/update/slots.json``, written atomically): the active slot (``None`` =
the version installed by the package manager), a pending slot with a ``tried`` flag, and the
last failed version. A pending slot is started once; if that start does not confirm it (its
health check failed, or the process died first), the next start rolls back to the active slot
and records the failed version, so a bad bundle cannot keep the device down.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from camfleet.atomic import TMP_PREFIX, atomic_write, sync_dir
from camfleet.proto.v1 import telemetry_pb2

if TYPE_CHECKING:
    from camfleet.edge.agent import EdgeAgent

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PAYLOAD = "payload"
NAME = "camfleet"
SLOTS = ("a", "b")
MAX_MANIFEST = 64 * 1024
#: Set by the launcher in the process it starts on a slot: the slot directory it runs.
SLOT_ENV = "CAMFLEET_EDGE_SLOT"
#: PYTHONPATH as it was before the launcher put a slot in front (restored on a switch back).
BASE_PATH_ENV = "CAMFLEET_EDGE_BASE_PYTHONPATH"


class UpdateError(Exception):
    """A bundle refused or an install that failed; the message is one line saying why."""


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str


def load_public_key(text: str) -> Ed25519PublicKey:
    """The release public key: base64 of the raw 32 bytes. ValueError with the reason."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The config value (``update_public_key``) for a release key."""
    return base64.b64encode(key.public_key().public_bytes_raw()).decode()


def make_bundle(version: str, files: dict[str, bytes]) -> bytes:
    """A bundle of ``files`` (paths inside ``payload/``) for ``version``: release tooling, tests."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        entries = {MANIFEST: json.dumps({"name": NAME, "version": version}).encode()}
        entries.update({f"{PAYLOAD}/{path}": data for path, data in sorted(files.items())})
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def sign(key: Ed25519PrivateKey, bundle: bytes) -> tuple[bytes, bytes]:
    """(sha256, signature) of a bundle: what an ED25519 OtaOffer carries."""
    digest = hashlib.sha256(bundle).digest()
    return digest, key.sign(digest)


def verify(
    bundle: bytes, sha256: bytes, signature: bytes, key: Ed25519PublicKey
) -> tuple[Manifest, dict[str, bytes]]:
    """Check digest, signature, then the archive; return the manifest and the payload files.

    Nothing is written to disk here: a refused bundle leaves no trace.
    """
    actual = hashlib.sha256(bundle).digest()
    if actual != sha256:
        raise UpdateError(
            f"digest mismatch: bundle sha256 {actual.hex()[:16]}..., "
            f"offer says {sha256.hex()[:16]}..."
        )
    try:
        key.verify(signature, sha256)
    except InvalidSignature:
        raise UpdateError(
            "bad signature: not signed by the release key in [agent] update_public_key"
        ) from None
    manifest: Manifest | None = None
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise UpdateError(f"unsafe path in bundle: {member.name!r}")
                if not member.isfile():
                    raise UpdateError(f"bundle member {member.name!r} is not a regular file")
                data = _read(tar, member)
                if member.name == MANIFEST:
                    manifest = _manifest(data)
                elif path.parts[0] == PAYLOAD and len(path.parts) > 1:
                    files[str(PurePosixPath(*path.parts[1:]))] = data
                else:
                    raise UpdateError(f"bundle member {member.name!r} is outside {PAYLOAD}/")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UpdateError(f"not a tar.gz bundle: {exc}") from None
    if manifest is None:
        raise UpdateError(f"bundle has no {MANIFEST}")
    if not files:
        raise UpdateError(f"bundle has an empty {PAYLOAD}/")
    return manifest, files


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None  # regular files always have a reader
    return f.read()


def _manifest(data: bytes) -> Manifest:
    if len(data) > MAX_MANIFEST:
        raise UpdateError(f"{MANIFEST} larger than {MAX_MANIFEST} bytes")
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UpdateError(f"{MANIFEST} is not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("name") != NAME:
        raise UpdateError(f"{MANIFEST}: name must be {NAME!r}")
    version = raw.get("version")
    if not isinstance(version, str) or not version.strip():
        raise UpdateError(f"{MANIFEST}: version must be a non-empty string")
    return Manifest(NAME, version)


class Slots:
    """The A/B slots under ``<state_dir>/update`` and which one runs."""

    def __init__(self, state_dir: Path, fsync: bool = True) -> None:
        self.root = Path(state_dir) / "update"
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)
        self.file = self.root / "slots.json"
        self.state = self._load()

    def _load(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"active": None, "version": "", "pending": None, "failed": None}
        try:
            raw = json.loads(self.file.read_bytes())
        except FileNotFoundError:
            return empty
        except (OSError, ValueError):
            # Unreadable state: run the package-installed version rather than a guess.
            return empty
        return {**empty, **raw} if isinstance(raw, dict) else empty

    def _save(self) -> None:
        atomic_write(self.file, json.dumps(self.state).encode(), fsync=self.fsync)

    def path(self, slot: str | None) -> Path | None:
        return None if slot is None else self.root / slot

    @property
    def pending(self) -> dict[str, Any] | None:
        pending = self.state["pending"]
        return pending if isinstance(pending, dict) else None

    @property
    def failed(self) -> dict[str, Any] | None:
        failed = self.state["failed"]
        return failed if isinstance(failed, dict) else None

    def install(
        self, manifest: Manifest, files: dict[str, bytes], artifact_id: str = "", sha256: str = ""
    ) -> Path:
        """Write a verified payload into the slot not running and mark it pending.

        ``artifact_id`` / ``sha256``: the controller artifact it came from (empty when installed
        by hand), carried into the ``ota`` events that tell the rollout how it went."""
        slot = "b" if self.state["active"] == "a" else "a"
        target = self.root / slot
        tmp = self.root / (TMP_PREFIX + slot)
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for name, data in files.items():
                dest = tmp / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(dest, data, fsync=self.fsync)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
            if self.fsync:
                sync_dir(self.root)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UpdateError(f"cannot install into slot {slot}: {exc.strerror or exc}") from None
        self.state["pending"] = {
            "slot": slot,
            "version": manifest.version,
            "tried": False,
            "artifact_id": artifact_id,
            "sha256": sha256,
        }
        self._save()
        return target

    def boot(self) -> Path | None:
        """The payload directory this start runs (None = the package-installed version).

        Called once per start by the launcher, before the agent imports anything from a slot.
        """
        pending = self.pending
        if pending is not None:
            if not pending.get("tried"):
                pending["tried"] = True  # saved before the attempt: a crash counts as a failure
                self._save()
                return self.path(pending["slot"])
            self.reject("the new version did not confirm itself after its restart")
        return self.path(self.state["active"])

    def confirm(self) -> None:
        """The pending version passed its health check: it becomes the active one."""
        pending = self.pending
        if pending is None:
            return
        self.state.update(
            active=pending["slot"], version=pending["version"], pending=None, failed=None
        )
        self._save()

    def reject(self, reason: str) -> None:
        """Give up the pending version; the next start runs the active one again."""
        pending = self.pending
        if pending is None:
            return
        failed = {
            "version": pending["version"],
            "reason": reason,
            "artifact_id": pending.get("artifact_id", ""),
            "sha256": pending.get("sha256", ""),
        }
        self.state.update(pending=None, failed=failed)
        self._save()

    def mark_reported(self) -> None:
        """The failure was published as an event: do not publish it again at the next start."""
        failed = self.failed
        if failed is not None and not failed.get("reported"):
            failed["reported"] = True
            self._save()


def exec_agent(slot: Path | None) -> None:
    """Replace this process by ``camfleet <same arguments>`` running ``slot`` (None = the
    package-installed version, through the launcher again). Never returns."""
    env = dict(os.environ)
    base = env.get(BASE_PATH_ENV, env.get("PYTHONPATH", ""))
    if slot is None:
        env.pop(SLOT_ENV, None)
        env.pop(BASE_PATH_ENV, None)
        if base:
            env["PYTHONPATH"] = base
        else:
            env.pop("PYTHONPATH", None)
    else:
        # First on the path: the slot's camfleet shadows the installed one (site-packages and
        # editable finders come after PYTHONPATH).
        env[SLOT_ENV] = str(slot)
        env[BASE_PATH_ENV] = base
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(slot), base) if p)
    log.info("running %s", slot or "the installed package")
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    # -P: the working directory must not shadow the slot (python -m puts it first otherwise)
    os.execve(sys.executable, [sys.executable, "-P", "-m", "camfleet", *sys.argv[1:]], env)


class HealthCheck(threading.Thread):
    """After a start on a pending slot: broker connected, birth published, one test capture,
    within ``[agent] update_check_s``; then confirm, or reject and stop the agent so that the
    CLI re-executes the previous version (``failed`` is set). After a start that followed a
    rollback: publish the failed version as an ``ota`` event, once."""

    def __init__(
        self, agent: EdgeAgent, slots: Slots, running: str | None, stop: threading.Event
    ) -> None:
        super().__init__(name="edge-update-check", daemon=True)
        self.agent = agent
        self.slots = slots
        self.running = running
        self.stop = stop
        self.timeout = agent.config.agent.update_check_s
        self.failed = False

    def run(self) -> None:
        pending = self.slots.pending
        if pending is not None and self.running == str(self.slots.path(pending["slot"])):
            self._check(pending)
            return
        failed = self.slots.failed
        if failed is not None and not failed.get("reported") and self._online():
            reason = f"rolled back: version {failed['version']} failed: {failed['reason']}"
            self.agent.event(
                "ota",
                reason,
                telemetry_pb2.SEVERITY_ERROR,
                ota=telemetry_pb2.OtaProgress(
                    artifact_id=failed.get("artifact_id", ""),
                    version=failed["version"],
                    phase="rolled_back",
                    error=reason,
                ),
                failed_version=failed["version"],
            )
            self.slots.mark_reported()

    def _online(self) -> bool:
        """Wait for the birth (``online`` is set right after it is published)."""
        deadline = self.timeout
        while deadline > 0 and not self.stop.is_set():
            if self.agent.online.wait(min(0.2, deadline)):  # 0.2 s: also notice a stop
                return True
            deadline -= 0.2
        return False

    def _check(self, pending: dict[str, Any]) -> None:
        version = pending["version"]
        why = ""
        if not self._online():
            if self.stop.is_set():
                return  # stopped during the check: the next start rolls back (tried once)
            why = f"broker not connected within {self.timeout:g} s"
        else:
            try:
                self.agent.capture(metadata={"trigger": "update-check"})
            except Exception as exc:  # a new version may fail in any way; all mean roll back
                why = f"test capture failed: {exc}"
        if why:
            log.error("update to %s: health check failed: %s", version, why)
            self.slots.reject(f"health check failed: {why}")
            self.failed = True
            self.stop.set()
            return
        self.slots.confirm()
        # After the birth on the new version (``_online``): the rollout counts a success only
        # when the device's last birth reports the offered version.
        self.agent.event(
            "ota",
            f"running {version}: health check passed",
            ota=telemetry_pb2.OtaProgress(
                artifact_id=pending.get("artifact_id", ""), version=version, phase="succeeded"
            ),
            version=version,
        )
