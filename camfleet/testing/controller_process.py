"""Run controllers for tests: in this process (fast) or as a subprocess (to kill -9 it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.controller import config as config_mod
from camfleet.controller.service import Controller
from camfleet.controller.storage import SqliteDatabase
from camfleet.proto import codec, topics
from camfleet.proto.v1 import state_pb2


class Waiter:
    """Wait for a condition on controller state, woken after every committed batch."""

    def __init__(self, ctl: Controller) -> None:
        self._cond = threading.Condition()
        ctl.batch_listeners.append(self._notify)

    def _notify(self, _result: object) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                # Woken by the next batch; the short cap also covers changes made outside batches
                # (scheduler ticks, API writes).
                self._cond.wait(min(left, 0.2))
        return True


def start_controller(broker_url: str, data: Path, **overrides: Any) -> Controller:
    overrides.setdefault("http", "")
    overrides.setdefault("tick_s", 0.2)
    cfg = config_mod.load(None, {"broker": broker_url, "data": data, **overrides}, environ={})
    ctl = Controller(cfg)
    ctl.start(http=bool(cfg.http))
    if not ctl.channel.connected.wait(10):
        ctl.stop()
        raise TimeoutError("controller did not connect")
    return ctl


def read_db(data: Path) -> SqliteDatabase:
    return SqliteDatabase(data / "registry.sqlite3")


def frame_rows(data: Path, device_id: str | None = None) -> list[dict[str, Any]]:
    db = read_db(data)
    try:
        with db.read() as tx:
            if device_id is None:
                rows: list[dict[str, Any]] = tx.query("SELECT * FROM frames")
            else:
                rows = tx.query("SELECT * FROM frames WHERE device_id = ?", (device_id,))
            return rows
    finally:
        db.close()


class ControllerProcess:
    """``camfleet controller run`` in a subprocess, ready once its presence says ONLINE."""

    def __init__(
        self, broker_host: str, broker_port: int, data: Path, *args: str, **env: str
    ) -> None:
        self.host, self.port, self.data, self.args = broker_host, broker_port, data, args
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        online = threading.Event()
        started_after = int(time.time() * 1000) - 1

        def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
            if not msg.payload:
                return
            st = codec.decode_as(state_pb2.ControllerState, msg.payload).message
            if st.presence == state_pb2.PRESENCE_ONLINE and st.started_at_ms >= started_after:
                online.set()

        watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
        watcher.on_message = on_message
        watcher.connect(self.host, self.port)
        watcher.subscribe(topics.controller_state_topic(), 1)
        watcher.loop_start()
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "camfleet",
                "controller",
                "run",
                "--broker",
                f"mqtt://{self.host}:{self.port}",
                "--data",
                str(self.data),
                "--http",
                "",
                *self.args,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.data.parent / f"{self.data.name}-controller.log", "ab"),  # noqa: SIM115
        )
        try:
            if not online.wait(timeout):
                raise TimeoutError("controller subprocess did not come online")
        finally:
            watcher.loop_stop()
            watcher.disconnect()

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
