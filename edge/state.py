"""What the agent keeps on disk between runs: session number, config overlay, desired version.

The session number increments on every connect and must never repeat (the controller orders
births and wills by it, and (session, seq) identifies frames), so it is written atomically
before it is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TypeVar

from google.protobuf.message import Message

from camfleet.atomic import atomic_write
from camfleet.dirlock import LockHeld, lock_file
from camfleet.errors import UserError
from camfleet.proto.v1 import config_pb2

MAX_SESSION = 2**32 - 1
M = TypeVar("M", bound=Message)


class AgentState:
    """Files under ``state_dir``: ``session``, ``config_overlay.pb``, ``desired.pb``,
    ``credentials.json`` (mode 0600: broker credentials delivered by ``camfleet device rotate``)."""

    def __init__(self, state_dir: Path, fsync: bool = True) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the state dir for this agent (flock, released when the process dies).

        Two agents on one state dir would reuse session numbers and delete each other's spool
        temp files: the second one gets a UserError instead.
        """
        try:
            self._lock_fd = lock_file(self.dir / "lock", f"pid {os.getpid()}")
        except LockHeld as held:
            raise UserError(
                f"another edge agent is running with state dir {self.dir} ({held.holder})"
            ) from None

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    # --- session --------------------------------------------------------------------------

    @property
    def _session_path(self) -> Path:
        return self.dir / "session"

    def last_session(self) -> int:
        return self.read_session(self._session_path)

    @staticmethod
    def read_session(path: Path) -> int:
        """The session number stored in ``path`` (0 when absent or unreadable)."""
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return 0
        return int(text) if text.isdigit() else 0

    def raise_to(self, session: int) -> None:
        """Make sure the next session is above ``session`` (a spool that outlived its state)."""
        if self.last_session() < session:
            atomic_write(self._session_path, f"{session}\n".encode(), self.fsync)

    def next_session(self) -> int:
        """Allocate and persist the next session number (wraps to 1 after 2**32-1)."""
        session = self.last_session() + 1
        if session > MAX_SESSION:
            session = 1
        atomic_write(self._session_path, f"{session}\n".encode(), self.fsync)
        return session

    # --- incarnation ----------------------------------------------------------------------

    def incarnation(self) -> tuple[bytes, int]:
        """(incarnation id, first session of it): created with this state (8 random bytes),
        so an agent whose state dir was wiped is told apart from its earlier self even when
        its session numbers repeat. The first session separates spooled frames of an earlier
        incarnation (a spool that outlived its state) from this one's."""
        path = self.dir / "incarnation"
        try:
            hex_id, _, first = path.read_text().strip().partition(" ")
            value = bytes.fromhex(hex_id)
            if len(value) == 8 and first.isdigit():
                return value, int(first)
        except (FileNotFoundError, ValueError):
            pass
        value, first_session = os.urandom(8), self.last_session() + 1
        atomic_write(path, f"{value.hex()} {first_session}\n".encode(), self.fsync)
        return value, first_session

    # --- config set by SetConfig commands -------------------------------------------------

    def load_overlay(self) -> config_pb2.DeviceConfig:
        return self._load(self.dir / "config_overlay.pb", config_pb2.DeviceConfig())

    def save_overlay(self, config: config_pb2.DeviceConfig) -> None:
        atomic_write(
            self.dir / "config_overlay.pb", config.SerializeToString(deterministic=True), self.fsync
        )

    # --- the last desired config applied -------------------------------------------------

    def load_desired(self) -> config_pb2.Desired:
        return self._load(self.dir / "desired.pb", config_pb2.Desired())

    def save_desired(self, desired: config_pb2.Desired) -> None:
        atomic_write(
            self.dir / "desired.pb", desired.SerializeToString(deterministic=True), self.fsync
        )

    # --- broker credentials delivered in desired config ---------------------------------

    def load_credentials(self) -> list[tuple[str, str]]:
        """(username, password) pairs, the newest first (the one before it is the fallback
        while the rotation is under way); empty: the config file's URL holds the identity."""
        try:
            data = json.loads((self.dir / "credentials.json").read_text())
            return [(str(u), str(p)) for u, p in data["identities"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError):  # damaged: the config file's identity
            return []

    def save_credentials(self, identities: list[tuple[str, str]]) -> None:
        data = json.dumps({"identities": [list(i) for i in identities]}).encode()
        atomic_write(self.dir / "credentials.json", data, self.fsync, mode=0o600)

    @staticmethod
    def _load(path: Path, message: M) -> M:
        try:
            message.ParseFromString(path.read_bytes())
        except FileNotFoundError:
            pass
        except Exception:  # a damaged file: start from defaults rather than refuse to run
            message.Clear()
        return message
