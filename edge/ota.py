"""Edge-agent self-update over MQTT: an ``OtaOffer`` from the controller, the bundle pulled with
the block protocol (docs/protocol.md "OTA pull protocol"), verified, installed, restarted into.

The download lives in ``<state_dir>/update/download/``: ``offer.pb`` (the offer command, so the
final ack names it), ``bundle.part`` (blocks written at their offset) and ``blocks`` (bitmap of
the blocks written, saved after each window once the data is on disk). An agent stopped or
restarted mid-transfer asks only for the blocks it lacks. When every block is in, the whole
file is checked like a bundle installed by hand (camfleet.edge.update.verify: SHA-256 against
the offer, Ed25519 signature against ``[agent] update_public_key``, archive layout) and the
manifest's version against the offer's; a refusal is reported as an ``ota`` event with phase
``failed`` and the reason, and nothing is installed. A good bundle goes into the idle A/B slot
and the agent re-executes through the launcher, which starts it once; its health check
(update.HealthCheck) confirms it (event ``succeeded``) or rolls back (event ``rolled_back``
from the previous version).

Offers are checked before anything is written: platform ``linux``, scheme ED25519, and, when
the agent has a device key (``[device] key``), ``device_hmac`` = HMAC-SHA256(device key,
sha256). The release signature is what protects the fleet: a controller or broker that can
forge offers still cannot produce a bundle the agent installs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import shutil
import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from camfleet.atomic import atomic_write
from camfleet.edge import update
from camfleet.proto import codec
from camfleet.proto.errors import ContractError
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, ota_pb2, telemetry_pb2

if TYPE_CHECKING:
    from camfleet.edge.agent import EdgeAgent

log = logging.getLogger(__name__)

A = command_pb2
WINDOW = 16  # blocks asked for at once
RETRY_S = 3.0  # a window not complete by then is asked for again (lost request, busy controller)
MAX_BLOCK = 1024 * 1024
MAX_BUNDLE = 512 * 1024 * 1024


class EdgeOta:
    def __init__(self, agent: EdgeAgent) -> None:
        self.agent = agent
        self.dir = Path(agent.config.agent.state_dir) / "update" / "download"
        self.fsync = agent.config.spool.fsync
        self._cond = threading.Condition()
        self.command: command_pb2.Command | None = None
        self.bits = bytearray()
        self.blocks = 0
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._write_error = ""
        self._load()

    @property
    def offer(self) -> command_pb2.OtaOffer | None:
        return self.command.ota_offer if self.command is not None else None

    # --- persisted download ------------------------------------------------------------------

    def _load(self) -> None:
        try:
            raw = (self.dir / "offer.pb").read_bytes()
            command = command_pb2.Command.FromString(raw)
        except FileNotFoundError:
            return
        except Exception as exc:  # unreadable record: start clean rather than never update
            log.warning("%s: dropping an unreadable download record: %s", self.agent.device_id, exc)
            self._clear()
            return
        self._begin(command)
        try:
            bits = (self.dir / "blocks").read_bytes()
        except OSError:
            bits = b""
        if len(bits) == len(self.bits):
            self.bits[:] = bits

    def _begin(self, command: command_pb2.Command) -> None:
        offer = command.ota_offer
        self.command = command
        self.blocks = (offer.size + offer.block_size - 1) // offer.block_size
        self.bits = bytearray((self.blocks + 7) // 8)

    def _open(self) -> int:
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.dir / "bundle.part", os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def _save_bits(self) -> None:
        """Data first, then the bitmap that claims it: a crash in between re-fetches blocks."""
        if self._fd is not None and self.fsync:
            os.fsync(self._fd)
        atomic_write(self.dir / "blocks", bytes(self.bits), fsync=self.fsync)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _clear(self) -> None:
        self._close()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.command = None
        self.bits = bytearray()
        self.blocks = 0
        self._write_error = ""

    # --- lifecycle (with the agent's start/stop) ----------------------------------------------

    def start(self) -> None:
        """Resume a download that a stop or restart interrupted."""
        if self.command is None:
            return
        if not self.agent.config.agent.update_public_key:  # updates turned off meanwhile
            log.warning("%s: self-update is off: dropping the download", self.agent.device_id)
            self._clear()
            return
        self._spawn()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        with self._cond:
            if self.command is not None and self._fd is not None:
                self._save_bits()
            self._close()

    def _spawn(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edge-ota", daemon=True)
        self._thread.start()

    # --- the offer (commands thread) ----------------------------------------------------------

    def handle_offer(self, command: command_pb2.Command) -> None:
        offer = command.ota_offer
        why = self._refusal(offer)
        if why:
            self.agent.commands.ack(command.id, A.ACK_STATUS_REJECTED, why)
            return
        if offer.version == self.agent.firmware_version:
            # A resent offer of the version this process runs. Before the health check confirmed
            # it, only the check may report success (or the rollback).
            if self._slots().pending is None:
                self._event(offer, "succeeded", f"already running {offer.version}")
            self.agent.commands.ack(command.id, A.ACK_STATUS_DONE, f"running {offer.version}")
            return
        current = self.offer
        if current is not None and current.sha256 == offer.sha256 and self._busy():
            with self._cond:  # a resend of the offer being downloaded: keep going
                assert self.command is not None
                self.command.id = command.id
            self.agent.commands.ack(command.id, A.ACK_STATUS_ACCEPTED, "download in progress")
            return
        self.stop()
        if current is None or current.sha256 != offer.sha256:
            self._clear()
            self._begin(command)
        else:
            assert self.command is not None
            self.command.id = command.id
        assert self.command is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.dir / "offer.pb", codec.encode(self.command), fsync=self.fsync)
        self.agent.commands.ack(
            command.id, A.ACK_STATUS_ACCEPTED, f"downloading {self.blocks} blocks"
        )
        self._spawn()

    def _busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _refusal(self, offer: command_pb2.OtaOffer) -> str:
        if not self.agent.config.agent.update_public_key:
            return "self-update is off: [agent] update_public_key is not set"
        if offer.platform != "linux":
            return f"platform {offer.platform or '(none)'} is not linux"
        if offer.scheme != A.SIGNATURE_SCHEME_ED25519:
            known = offer.scheme in A.SignatureScheme.values()  # proto3 enums are open
            name = A.SignatureScheme.Name(offer.scheme) if known else str(offer.scheme)
            return f"signature scheme {name} unsupported here"
        if len(offer.sha256) != 32 or len(offer.signature) != 64:
            return "sha256 must be 32 bytes and the Ed25519 signature 64"
        if not 0 < offer.block_size <= MAX_BLOCK or not 0 < offer.size <= MAX_BUNDLE:
            return f"size {offer.size} / block_size {offer.block_size} out of range"
        key = self.agent.config.device.key
        if key:
            expect = hmac.new(key, offer.sha256, hashlib.sha256).digest()
            if not hmac.compare_digest(expect, offer.device_hmac):
                return "bad device HMAC: the offer was not made for this device's key"
        failed = self._slots().failed
        if failed is not None and failed.get("sha256") == offer.sha256.hex():
            return (
                f"version {failed['version']} failed its health check here and was rolled "
                "back: not installed again"
            )
        return ""

    def _slots(self) -> update.Slots:
        return self.agent.slots or update.Slots(self.agent.config.agent.state_dir, self.fsync)

    # --- blocks (network thread) --------------------------------------------------------------

    def on_block(self, payload: bytes) -> str:
        """Write one block of the current download; a reason when the payload is malformed."""
        try:
            block = codec.decode(Kind.OTA_BLOCK, payload).message
        except ContractError as exc:
            return str(exc)
        assert isinstance(block, ota_pb2.OtaBlock)
        with self._cond:
            offer = self.offer
            if offer is None or block.artifact_id != offer.artifact_id or self._stop.is_set():
                return ""  # a late block of a finished or replaced download
            i = block.index
            if i >= self.blocks or self._have(i):
                return ""
            expect = min(offer.block_size, offer.size - i * offer.block_size)
            data = block.data
            if len(data) != expect or hashlib.sha256(data).digest() != block.sha256:
                return ""  # corrupted in transit: stays missing, asked for again
            try:
                os.pwrite(self._open(), data, i * offer.block_size)
            except OSError as exc:  # disk full, read-only: the download thread reports it
                self._write_error = f"cannot write the download: {exc.strerror or exc}"
                self._cond.notify_all()
                return ""
            self.bits[i >> 3] |= 1 << (i & 7)
            self._cond.notify_all()
        return ""

    def _answered(self, first: int, count: int) -> bool:
        """The window is in (or there is no point waiting for it)."""
        return (
            self._stop.is_set()
            or bool(self._write_error)
            or all(self._have(first + j) for j in range(count))
        )

    def _have(self, i: int) -> bool:
        return bool(self.bits[i >> 3] & (1 << (i & 7)))

    def _done(self) -> int:
        return sum(1 for i in range(self.blocks) if self._have(i))

    def _window(self) -> tuple[int, int, bytes] | None:
        first = next((i for i in range(self.blocks) if not self._have(i)), None)
        if first is None:
            return None
        count = min(WINDOW, self.blocks - first)
        wanted = bytearray((count + 7) // 8)
        for j in range(count):
            if not self._have(first + j):
                wanted[j >> 3] |= 1 << (j & 7)
        return first, count, bytes(wanted)

    # --- the transfer (its own thread) --------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._download():
                self._finish()
        except Exception as exc:  # disk errors and bugs alike: report, never kill the agent
            if not isinstance(exc, OSError):
                log.exception("%s: self-update failed", self.agent.device_id)
            self._fail(str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}")

    def _download(self) -> bool:
        """Ask for missing windows until every block is in; False when stopped."""
        offer = self.offer
        assert offer is not None
        announced = False
        while not self._stop.is_set():
            if not self.agent.online.wait(0.2):  # 0.2 s: also notice a stop
                continue
            with self._cond:
                window = self._window()
                done = self._done()
            if not announced:
                self._event(offer, "downloading", f"{done}/{self.blocks} blocks", done)
                announced = True
            if window is None:
                return True
            first, count, wanted = window
            request = ota_pb2.OtaBlockRequest(
                artifact_id=offer.artifact_id,
                first_block=first,
                count=count,
                wanted=wanted,
                session=self.agent.sessions.connected_session,
            )
            self.agent.conn.publish(self.agent.topic(Kind.OTA_REQUEST), codec.encode(request))
            with self._cond:
                self._cond.wait_for(partial(self._answered, first, count), RETRY_S)
                if self._write_error:
                    raise OSError(self._write_error)
                if self._fd is not None:
                    self._save_bits()
        return False

    def _finish(self) -> None:
        offer = self.offer
        assert offer is not None and self.command is not None
        self._event(offer, "verifying", "checking digest and signature", self.blocks)
        with self._cond:
            self._close()
        data = (self.dir / "bundle.part").read_bytes()[: offer.size]
        key = update.load_public_key(self.agent.config.agent.update_public_key)
        try:
            manifest, files = update.verify(data, offer.sha256, offer.signature, key)
            if manifest.version != offer.version:
                raise update.UpdateError(
                    f"bundle version {manifest.version}, the offer says {offer.version}"
                )
            self._slots().install(manifest, files, offer.artifact_id, offer.sha256.hex())
        except update.UpdateError as exc:
            self._fail(str(exc))
            return
        self._event(offer, "rebooting", f"installed {manifest.version}, restarting into it")
        self.agent.commands.ack(
            self.command.id, A.ACK_STATUS_DONE, f"installed {manifest.version}, restarting"
        )
        with self._cond:
            self._clear()
        self.agent.request_reexec()

    def _fail(self, why: str) -> None:
        """Refused or broken: reported, download forgotten (the same bytes would fail again)."""
        offer, command = self.offer, self.command
        if offer is None or command is None:
            return
        log.error("%s: update to %s refused: %s", self.agent.device_id, offer.version, why)
        self._event(offer, "failed", why, severity=telemetry_pb2.SEVERITY_ERROR, error=why)
        self.agent.commands.ack(command.id, A.ACK_STATUS_FAILED, why)
        with self._cond:
            self._clear()

    def _event(
        self,
        offer: command_pb2.OtaOffer,
        phase: str,
        message: str,
        blocks_done: int = 0,
        severity: int = telemetry_pb2.SEVERITY_INFO,
        error: str = "",
    ) -> None:
        self.agent.event(
            "ota",
            message,
            severity,
            ota=telemetry_pb2.OtaProgress(
                artifact_id=offer.artifact_id,
                version=offer.version,
                phase=phase,
                blocks_done=blocks_done,
                blocks_total=self.blocks,
                error=error,
            ),
        )
