"""Fault injectors of the fault suite: a TCP proxy that can cut the network, a small filesystem
that can be filled, a registry lock, and an observer of what crosses the broker.

Each injector starts and ends its fault on request and never sleeps on its own: the suite
decides when (seeded random moments) and waits on events between faults.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sqlite3
import struct
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the broker; ``cut()`` drops every connection and refuses new
    ones (devices see a dead network), ``restore()`` lets them in again.

    One asyncio loop on one thread, whatever the number of connections.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cut_now = False
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:  # broker down: the device sees a refused connection
            writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        def do() -> None:
            self.cut_now = True
            for w in list(self._writers):
                w.transport.abort()

        self._loop.call_soon_threadsafe(do)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "cut_now", False)

    def close(self) -> None:
        def do() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            self._loop.stop()

        self._loop.call_soon_threadsafe(do)
        self._thread.join(5)


class SmallFilesystem:
    """A tmpfs of ``size_mib`` mounted on ``path`` (needs CAP_SYS_ADMIN: root here and in CI);
    ``fill()`` takes every free byte with one file, ``free()`` gives them back."""

    def __init__(self, path: Path, size_mib: int) -> None:
        self.path = path
        self.size_mib = size_mib
        self.filler = path / "disk-filler"
        self.mounted = False

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0

    def mount(self) -> SmallFilesystem:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m", "tmpfs", str(self.path)],
            check=True,
            capture_output=True,
        )
        self.mounted = True
        return self

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Leave no free byte; returns how many bytes the filler took."""
        taken = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            # Allocate in steps: the other processes on this filesystem keep writing meanwhile.
            while (left := self.free_bytes()) > 0:
                try:
                    os.posix_fallocate(fd, taken, left)
                    taken += left
                except OSError:
                    break
        finally:
            os.close(fd)
        return taken

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False


class RegistryLock:
    """Holds an exclusive lock on the controller's SQLite registry: its writer must wait (its
    busy timeout), as it would behind a backup or a slow disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def lock(self) -> None:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        self._conn = conn

    def unlock(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.execute("ROLLBACK")
            conn.close()


class Observer:
    """A clean-session subscriber on the broker itself (not through the proxy): sees frames and
    receipts as they pass, so the suite can wait for "traffic flows again" and aim faults at
    moments when work is in flight."""

    def __init__(self, host: str, port: int, root: str = "camfleet") -> None:
        self.cond = threading.Condition()
        self.frames = 0
        self.receipts = 0
        self._root = root
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        client.subscribe([(f"{self._root}/v1/+/frame", 0), (f"{self._root}/v1/+/receipt", 0)])

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        with self.cond:
            if msg.topic.endswith("/receipt"):
                self.receipts += 1
            else:
                self.frames += 1
            self.cond.notify_all()

    def wait(self, what: str, timeout: float) -> float | None:
        """Wait for the next frame or receipt (``what``); seconds waited, None on timeout."""
        started = time.monotonic()
        with self.cond:
            before = getattr(self, what)
            if self.cond.wait_for(lambda: getattr(self, what) > before, timeout):
                return time.monotonic() - started
        return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SpoolWatch:
    """Every frame file that appears in the watched spool directories (inotify IN_MOVED_TO: the
    ESP32 node writes ``.tmp`` and renames it to ``<session>-<seq>.f``), i.e. every frame a
    node captured, whether or not it is still there: the node deletes receipted frames."""

    _IN_MOVED_TO = 0x80
    _EVENT = struct.Struct("iIII")

    def __init__(self, own_dir: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._add_watch = libc.inotify_add_watch
        self._add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._fd = libc.inotify_init1(os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._dirs: dict[int, str] = {}
        self._closing = False
        self.frames: dict[str, set[tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self._own = own_dir
        self.watch(own_dir, "")  # where close() wakes the reader
        self._thread = threading.Thread(target=self._run, name="spool-watch", daemon=True)
        self._thread.start()

    def watch(self, directory: Path, device_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        wd = self._add_watch(self._fd, str(directory).encode(), self._IN_MOVED_TO)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
        with self._lock:
            self._dirs[wd] = device_id
            self.frames.setdefault(device_id, set())

    def captured(self, device_id: str) -> set[tuple[int, int]]:
        with self._lock:
            return set(self.frames.get(device_id, ()))

    def _run(self) -> None:
        while True:
            data = os.read(self._fd, 65536)
            if self._closing:
                return
            pos = 0
            while pos < len(data):
                wd, _mask, _cookie, length = self._EVENT.unpack_from(data, pos)
                name = data[pos + 16 : pos + 16 + length].rstrip(b"\0").decode()
                pos += 16 + length
                if name.endswith(".f"):
                    session, seq = name[:-2].split("-")
                    with self._lock:
                        self.frames[self._dirs[wd]].add((int(session), int(seq)))

    def close(self) -> None:
        """Stop the reader (woken by a rename in its own directory), then close the fd."""
        self._closing = True
        wake = self._own / "close.tmp"
        wake.write_bytes(b"")
        wake.rename(self._own / "close.x")
        self._thread.join(10)
        os.close(self._fd)
