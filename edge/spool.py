"""The disk spool: every frame is on disk until the controller's receipt covers it.

One file per frame, ``<session>-<seq>.frame`` (zero-padded, so names sort in capture order),
holding the encoded Frame. Writes are atomic: write a temp file, fsync it, rename it into place,
fsync the directory; a crash or power cut therefore leaves either the whole frame or nothing
(a leftover temp file is removed at the next start). A file that still fails to decode (a disk
that lied about fsync) is moved to ``corrupt/`` and reported, never sent.

Bounded by frame count and bytes: when full, the oldest frames are dropped first and returned to
the caller, which reports them with an ``Event(type="spool_dropped")``. Frames are deleted only
by :meth:`Spool.apply_receipt` (or dropped when full), never because a publish "succeeded":
PUBACK is not proof of storage (docs/protocol.md, "Durability: receipts and spools").
"""

from __future__ import annotations

import bisect
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from camfleet.atomic import TMP_PREFIX, atomic_write, sync_dir
from camfleet.proto import codec
from camfleet.proto.errors import ContractError
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import frame_pb2

_NAME_RE = re.compile(r"(\d{10})-(\d{10})\.frame")


class SpoolKey(NamedTuple):
    """Identity and order of a spooled frame."""

    session: int
    seq: int

    @property
    def filename(self) -> str:
        return f"{self.session:010d}-{self.seq:010d}.frame"


class CorruptFrame(Exception):
    """A spooled file that does not decode as a valid Frame (moved to ``corrupt/``)."""


def scan(directory: Path) -> dict[SpoolKey, int]:
    """Read-only listing of the spooled frames and their sizes (safe while an agent runs)."""
    sizes: dict[SpoolKey, int] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return sizes
    for entry in entries:
        m = _NAME_RE.fullmatch(entry.name)
        if m:
            try:
                sizes[SpoolKey(int(m.group(1)), int(m.group(2)))] = entry.stat().st_size
            except FileNotFoundError:  # receipted while we looked
                pass
    return sizes


class Spool:
    """A bounded, crash-safe, ordered frame store. Thread-safe."""

    def __init__(
        self, directory: Path, *, max_frames: int, max_bytes: int, fsync: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._keys: list[SpoolKey] = []
        self._sizes: dict[SpoolKey, int] = {}
        self._bytes = 0
        self.removed_temp_files = 0
        self._open()

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(self.directory):
            if entry.name.startswith(TMP_PREFIX):
                os.unlink(entry.path)  # an interrupted write: the frame never existed
                self.removed_temp_files += 1
        self._sizes = scan(self.directory)
        self._keys = sorted(self._sizes)
        self._bytes = sum(self._sizes.values())
        if self.removed_temp_files:
            self._sync_dir()

    # --- queries -----------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return len(self._keys)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def frame_keys(self) -> list[SpoolKey]:
        with self._lock:
            return list(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._sizes

    def next_after(self, key: SpoolKey | None) -> SpoolKey | None:
        """The oldest spooled key greater than ``key`` (the oldest of all when None)."""
        with self._lock:
            i = 0 if key is None else bisect.bisect_right(self._keys, key)
            return self._keys[i] if i < len(self._keys) else None

    def max_session(self) -> int:
        """Highest session with a spooled frame (0 when empty)."""
        with self._lock:
            return self._keys[-1].session if self._keys else 0

    def last_seq(self, session: int) -> int:
        """Highest spooled seq of ``session`` (0 when none): a restart must never reuse one."""
        with self._lock:
            i = bisect.bisect_right(self._keys, SpoolKey(session, 2**32))
            if i and self._keys[i - 1].session == session:
                return self._keys[i - 1].seq
            return 0

    def read(self, key: SpoolKey) -> frame_pb2.Frame:
        """The spooled Frame; CorruptFrame (after quarantining the file) when it is damaged."""
        path = self.directory / key.filename
        data = path.read_bytes()
        try:
            frame = codec.decode(Kind.FRAME, data).message
        except ContractError as exc:
            self._quarantine(key)
            raise CorruptFrame(f"spooled frame {key.session}-{key.seq}: {exc}") from None
        assert isinstance(frame, frame_pb2.Frame)
        if (frame.session, frame.seq) != key:
            self._quarantine(key)
            raise CorruptFrame(
                f"spooled file {key.filename} holds frame {frame.session}-{frame.seq}"
            )
        return frame

    # --- changes -----------------------------------------------------------------------------

    def put(self, frame: frame_pb2.Frame) -> list[SpoolKey]:
        """Store ``frame`` durably; return the keys dropped (oldest first) to make room."""
        key = SpoolKey(frame.session, frame.seq)
        data = codec.encode(frame)
        dropped: list[SpoolKey] = []
        with self._lock:
            if key in self._sizes:
                raise ValueError(f"frame {key.session}-{key.seq} is already spooled")
            while self._keys and (
                len(self._keys) + 1 > self.max_frames or self._bytes + len(data) > self.max_bytes
            ):
                oldest = self._keys[0]
                self._remove(oldest)
                dropped.append(oldest)
            self._write(key, data)
            bisect.insort(self._keys, key)
            self._sizes[key] = len(data)
            self._bytes += len(data)
        return dropped

    def apply_receipt(
        self,
        receipt: frame_pb2.Receipt,
        incarnation: bytes = b"",
        since_session: int = 0,
        sent: Callable[[SpoolKey], bool] | None = None,
    ) -> list[SpoolKey]:
        """Delete every spooled frame the receipt covers; return the deleted keys.

        A range covers a frame of this incarnation (sessions from ``since_session`` on) only
        when it names ``incarnation``: a receipt for an earlier incarnation's (session, seq)
        (still queued in the broker after a wipe) never deletes a new frame. Frames spooled
        before ``since_session`` belong to an earlier incarnation and match a range of any.
        With ``sent``, only frames it says were published are deleted (a receipt for frames
        never sent is a lie or a mix-up).
        """
        deleted: list[SpoolKey] = []
        with self._lock:
            for r in receipt.stored:
                if r.session >= since_session and r.incarnation != incarnation:
                    continue
                lo = bisect.bisect_left(self._keys, SpoolKey(r.session, r.first_seq))
                hi = bisect.bisect_right(self._keys, SpoolKey(r.session, r.last_seq))
                for key in self._keys[lo:hi]:
                    if sent is not None and not sent(key):
                        continue
                    self._remove(key, sync=False)
                    deleted.append(key)
            if deleted:
                self._sync_dir()
        return deleted

    def _write(self, key: SpoolKey, data: bytes) -> None:
        atomic_write(self.directory / key.filename, data, self.fsync)

    def _remove(self, key: SpoolKey, sync: bool = True) -> None:
        try:
            os.unlink(self.directory / key.filename)
        except FileNotFoundError:
            pass
        self._forget(key)
        if sync:
            self._sync_dir()

    def _forget(self, key: SpoolKey) -> None:
        size = self._sizes.pop(key, None)
        if size is not None:
            self._bytes -= size
            i = bisect.bisect_left(self._keys, key)
            if i < len(self._keys) and self._keys[i] == key:
                del self._keys[i]

    def _quarantine(self, key: SpoolKey) -> None:
        corrupt = self.directory / "corrupt"
        corrupt.mkdir(exist_ok=True)
        with self._lock:
            try:
                os.replace(self.directory / key.filename, corrupt / key.filename)
            except FileNotFoundError:
                pass
            self._forget(key)
            self._sync_dir()

    def _sync_dir(self) -> None:
        if self.fsync:
            sync_dir(self.directory)
