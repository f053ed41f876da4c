"""Frame files behind one interface: a local directory by default (an object store fits too).

Keys are relative paths like ``frames/{device}/{YYYY-MM-DD}/{HHMMSS}_{session}-{seq}.jpg`` so the
directory is browsable as it is. ``put_batch`` is the group commit of the file side: every file
is written to a temporary name and renamed (atomic: a reader never sees half a JPEG), then ONE
filesystem sync makes the whole batch durable before the caller commits the index rows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def frame_key(
    device_id: str, session: int, seq: int, captured_at_ms: int, content_type: str
) -> str:
    """The store key of a frame. The same frame always gets the same key (redelivery-safe)."""
    when = dt.datetime.fromtimestamp(max(captured_at_ms, 0) / 1000, tz=dt.UTC)
    ext = _EXTENSIONS.get(content_type, "bin")
    return f"frames/{device_id}/{when:%Y-%m-%d}/{when:%H%M%S}_{session}-{seq}.{ext}"


class FrameStore:
    """What the controller needs from a place that keeps frame bytes."""

    def put_batch(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every (key, data); durable when this returns."""
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def path(self, key: str) -> Path | None:
        """A local path for streaming, when the store has one."""
        return None

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def keys(self) -> Iterator[str]:
        raise NotImplementedError


class LocalFrameStore(FrameStore):
    """Files under ``root``; durability by syncfs(2) once per batch (fsync per file as fallback)."""

    def __init__(self, root: Path, threads: int = 4) -> None:
        self.root = Path(root)
        self._pool = ThreadPoolExecutor(threads, "camfleet-files") if threads > 1 else None
        self.root.mkdir(parents=True, exist_ok=True)
        self._syncfs = _load_syncfs()
        self._known_dirs: set[str] = set()
        self.remove_orphan_temporaries()

    def remove_orphan_temporaries(self) -> int:
        """Delete temporary files left by a writer that died mid-write (its pid is gone)."""
        removed = 0
        for tmp in self.root.rglob(".*.tmp"):
            try:
                pid = int(tmp.name.rsplit(".", 2)[-2])
            except (ValueError, IndexError):
                continue
            if pid != os.getpid() and _alive(pid):
                continue
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed

    def _full(self, key: str) -> Path:
        if key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
            raise ValueError(f"store key {key!r} is not a plain relative path")
        return self.root / key

    def put_batch(self, items: Sequence[tuple[str, bytes]]) -> None:
        if not items:
            return
        parents = set()
        for key, _ in items:
            self._full(key)
            parent = f"{self.root}/{key}".rpartition("/")[0]
            if parent not in self._known_dirs:
                os.makedirs(parent, exist_ok=True)
                self._known_dirs.add(parent)
            parents.add(parent)
        if self._pool is None or len(items) < 4:
            for item in items:
                self._write_one(item)
        else:
            # File creation waits on the filesystem journal (ext4 stalls creators while it
            # commits); several threads overlap those waits, and os calls release the GIL.
            list(self._pool.map(self._write_one, items))
        self._sync({Path(d) for d in parents})

    def _write_one(self, item: tuple[str, bytes]) -> None:
        key, data = item
        final = f"{self.root}/{key}"
        parent, _, name = final.rpartition("/")
        tmp = f"{parent}/.{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._syncfs is None:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)

    def _sync(self, dirs: set[Path]) -> None:
        if self._syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if self._syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
        for d in dirs:  # fallback: the files are fsynced; make their renames durable too
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def get(self, key: str) -> bytes:
        return self._full(key).read_bytes()

    def path(self, key: str) -> Path | None:
        return self._full(key)

    def delete(self, key: str) -> None:
        try:
            self._full(key).unlink()
        except FileNotFoundError:
            pass

    def keys(self) -> Iterator[str]:
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.root).as_posix()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load_syncfs() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn
