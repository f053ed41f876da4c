"""Start, stop, kill and restart a local mosquitto with camfleet's configuration.

Used by the tests (each gets its own broker on a free port), the benchmarks and the demo. The
config is broker_config/common.conf + dev.conf plus a listener on 127.0.0.1, a persistence
directory and the current user (so a root run does not drop to a `mosquitto` user that cannot
write the files).
"""

from __future__ import annotations

import getpass
import logging
import logging.handlers
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from camfleet.dirlock import LockHeld, lock_file
from camfleet.errors import UserError

READY_MARKER = " running"  # "mosquitto version 2.0.11 running"
_TIMESTAMP = re.compile(r"^\d+: ")  # mosquitto's log lines start "1732612345: "


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_config(profile: str = "dev") -> str:
    """broker_config/common.conf followed by the profile's security settings (dev.conf, ...)."""
    folder = resources.files("camfleet.broker_config")
    return "\n".join(
        folder.joinpath(name).read_text() for name in ("common.conf", f"{profile}.conf")
    )


class Mosquitto:
    """One mosquitto process with its own config, data directory and port.

    ``start()`` returns once mosquitto logs that it is running; ``stop()`` is a clean shutdown
    (it saves persistent sessions), ``kill()`` is SIGKILL (it loses what was not autosaved).

    mosquitto logs to its stderr, read here: the last 2,000 lines are kept in ``log`` and, when
    ``log_file`` is given, every line is also appended to that file, rotated at
    ``log_max_bytes`` with ``log_backups`` older files (``mosquitto.log.1`` ...), so a broker
    that runs for months keeps its history on disk in bounded space.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_config: str = "",
        executable: str = "mosquitto",
        log_file: Path | None = None,
        log_max_bytes: int = 10_000_000,
        log_backups: int = 3,
        max_open_files: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.extra_config = extra_config
        self.executable = executable
        #: RLIMIT_NOFILE for the broker: with the usual 1024 it silently stops at ~1015 clients.
        self.max_open_files = max_open_files
        self.proc: subprocess.Popen[str] | None = None
        self.log: deque[str] = deque(maxlen=2000)
        self.log_file = log_file
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self._log_cond = threading.Condition()
        self._ready = threading.Event()
        self._stderr_closed = threading.Event()
        self._reader: threading.Thread | None = None
        self._lock_fd: int | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def lock_path(self) -> Path:
        return self.workdir / "mosquitto.lock"

    def _lock(self) -> None:
        """Claim the work directory before writing anything in it.

        A second instance pointed at the same directory (the same ``--data``) must not rewrite the
        running one's config or share its persistence. The lock is an flock that mosquitto
        inherits, so it holds as long as either this process or the broker lives.
        """
        try:
            self._lock_fd = lock_file(self.lock_path, f"pid {os.getpid()}, port {self.port}")
        except LockHeld as held:
            raise RuntimeError(
                f"another broker uses {self.workdir} ({held.holder}): stop it, or give this one a "
                "directory of its own"
            ) from None

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def write_config(self) -> Path:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        text = "\n".join(
            [
                base_config(),
                f"user {getpass.getuser()}",
                f"listener {self.port} {self.host}",
                f"persistence_location {data}/",
                "log_dest stderr",
                self.extra_config,
                "",
            ]
        )
        self.config_path.write_text(text)
        return self.config_path

    def start(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("mosquitto is already running")
        exe = shutil.which(self.executable) or shutil.which(
            self.executable, path="/usr/sbin:/usr/local/sbin"
        )
        if exe is None:
            raise UserError(
                "mosquitto is not installed: run `sudo apt-get install -y mosquitto` "
                "(scripts/setup does it for you)"
            )
        self._lock()
        self.write_config()
        self._ready.clear()
        self._stderr_closed.clear()
        assert self._lock_fd is not None
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            pass_fds=(self._lock_fd,),
            preexec_fn=self._raise_open_files if self.max_open_files else None,
        )
        self._reader = threading.Thread(target=self._read_log, args=(self.proc,), daemon=True)
        self._reader.start()
        # A closed stderr means mosquitto is exiting, even if it is not reaped yet (poll() alone
        # would race with that and call a failed start a success).
        if not self._ready.wait(timeout) or self._stderr_closed.is_set():
            self.kill()
            tail = "\n".join(list(self.log)[-10:])
            raise RuntimeError(
                f"mosquitto did not start on port {self.port}: {self.failure_reason()}\n{tail}"
            )

    def failure_reason(self) -> str:
        """mosquitto's own words for why it stopped: its ``Error:`` lines, else its last line."""
        lines = [_TIMESTAMP.sub("", line) for line in self.log if line.strip()]
        errors = [line for line in lines if line.startswith("Error")]
        return "; ".join(errors) or (lines[-1] if lines else "it exited without a word")

    def _raise_open_files(self) -> None:
        # In the child, before exec: never above the hard limit (raising it needs privileges).
        assert self.max_open_files is not None
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = (
            self.max_open_files
            if hard == resource.RLIM_INFINITY
            else min(self.max_open_files, hard)
        )
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    def _read_log(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        sink = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            sink = logging.handlers.RotatingFileHandler(
                self.log_file, maxBytes=self.log_max_bytes, backupCount=self.log_backups
            )
        try:
            for line in proc.stderr:
                line = line.rstrip()
                if sink is not None:
                    sink.emit(logging.makeLogRecord({"msg": line}))
                with self._log_cond:
                    self.log.append(line)
                    self._log_cond.notify_all()
                if READY_MARKER in line and "version" in line:
                    self._ready.set()
        finally:
            if sink is not None:
                sink.close()
            self._stderr_closed.set()
        self._ready.set()  # process ended: wake start() so it reports the failure

    def wait_log(self, predicate: Callable[[list[str]], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate`` holds for the kept log lines (woken by each new line)."""
        with self._log_cond:
            return self._log_cond.wait_for(lambda: predicate(list(self.log)), timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown (SIGTERM): persistent sessions and retained messages are saved."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: what was not yet autosaved is lost, as in a power cut."""
        self._end(signal.SIGKILL, 10.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            self._unlock()
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        self._unlock()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
