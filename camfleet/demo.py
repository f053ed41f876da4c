"""``camfleet demo``: the whole system on one machine, as separate processes like in production.

A mosquitto broker (the embedded amqtt broker when mosquitto is missing), the controller with its
HTTP API, Linux edge agents with the synthetic camera, and simulated ESP32-CAM nodes (the real
MicroPython node code on the host port, deep sleep compressed). The demo queues a capture command
for a sleeping node, prints a status line every few seconds, and stops everything on Ctrl-C (or
after ``--duration``). Each process logs to ``DATA/logs/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from camfleet.dirlock import LockHeld, lock_file
from camfleet.embedded_broker import EmbeddedBroker
from camfleet.errors import UserError
from camfleet.mosquitto import Mosquitto, free_port


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


class Processes:
    """The demo's child processes: started with logs to files, stopped together."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[Child] = []

    def start(self, name: str, *args: str) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "camfleet", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def dead(self) -> list[Child]:
        return [c for c in self.children if c.proc.poll() is not None]

    def stop(self, timeout: float = 15.0) -> None:
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()


def edge_config(
    path: Path,
    device_id: str,
    broker_url: str,
    seed: int,
    interval_s: float,
    key: bytes = b"",
    ca_file: Path | None = None,
) -> None:
    """The agent's config; ``key`` and ``ca_file`` for an enrolled device (--secure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key_line = f'key = "{key.hex()}"\n' if key else ""
    ca_line = f'ca_file = "{ca_file}"\n' if ca_file else ""
    path.write_text(
        f"""# written by camfleet demo
[device]
id = "{device_id}"
board = "demo-synthetic"
groups = ["demo"]
{key_line}
[broker]
url = "{broker_url}"
{ca_line}
[camera]
backend = "synthetic"
width = 640
height = 480
jpeg_quality = 80

[camera.options]
seed = {seed}

[schedule]
interval_s = {interval_s}

[agent]
state_dir = "state"
telemetry_interval_s = 10
"""
    )


class SecureDemo:
    """--secure: a prod broker directory in DATA/broker and each device enrolled in it."""

    def __init__(self, data: Path, port: int) -> None:
        from camfleet.broker_config.profiles import ConfiguredMosquitto, init_broker

        folder = data / "broker-prod"
        init_broker(folder, "prod", port=port or free_port(), tls_port=free_port(),
                    cert_port=free_port(), websockets="off", force=True)  # fmt: skip
        self.broker = ConfiguredMosquitto(folder)
        self.dir = self.broker.broker_dir
        self.data = data

    @property
    def tls_url(self) -> str:
        return str(self.dir.url(tls=True))

    @property
    def controller_url(self) -> str:
        from camfleet.broker_config.profiles import url_with_password

        return url_with_password(self.dir.url("controller"))

    def enrol(self, device_id: str) -> tuple[str, bytes]:
        """Enrol an edge agent: its broker URL (TLS, own identity) and its key."""
        from camfleet.controller.device_keys import registry_keys
        from camfleet.enrol import add_device

        with registry_keys(self.data / "controller") as keys:
            e = add_device(
                self.dir, keys, device_id, ("demo",), "usb", self.data / "devices", "127.0.0.1"
            )
        return f"mqtts://{device_id}:{e.password}@127.0.0.1:{self.dir.settings.tls_port}", e.key


def wait_known(api: str, device_id: str, procs: Processes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = procs.dead()
        if dead:
            raise UserError(f"{dead[0].name} exited at start-up: see {dead[0].log}")
        if httpx.get(f"{api}/api/v1/devices/{device_id}", timeout=5).status_code == 200:
            return
        time.sleep(0.2)  # polling another process's HTTP API: nothing to await
    raise UserError(f"{device_id} did not connect in {timeout:.0f}s: see the logs")


LOCK_NAME = "demo.lock"
STATUS_EVERY_S = 5.0


def wipe(data: Path) -> None:
    """Empty ``data`` except the lock file this demo holds (a new file would be a new lock)."""
    for entry in data.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def check_port_free(host: str, port: int) -> None:
    """Refuse at once, before anything starts, when the API port is taken (by another demo or
    controller, whose /health would otherwise answer for ours)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"the API address {host}:{port} is not available ({exc.strerror}): stop what "
                "uses it, or pass --http HOST:PORT"
            ) from None


def last_error(log: Path) -> str:
    """The child's own ``camfleet: error:`` line (its cause), else where to look."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith("camfleet: error: "):
            return line.removeprefix("camfleet: error: ") + f" (see {log})"
    return f"see {log}"


def next_row_in(started: float, duration: float) -> float:
    """Seconds until the next status row: every STATUS_EVERY_S, and one at --duration."""
    if not duration:
        return STATUS_EVERY_S
    return max(0.0, min(STATUS_EVERY_S, started + duration - time.monotonic()))


def wait_healthy(api: str, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise UserError(f"the controller exited at start-up: {last_error(child.log)}")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling another process's HTTP port: nothing to await
    raise UserError(
        f"the controller API did not answer at {api} in {timeout:.0f}s: see {child.log}"
    )


def status(api: str) -> dict[str, Any]:
    devices = httpx.get(f"{api}/api/v1/devices", timeout=5).json()
    items = devices.get("items", devices) if isinstance(devices, dict) else devices
    states: dict[str, int] = {}
    for d in items:
        states[d["state"]] = states.get(d["state"], 0) + 1
    stored = 0.0
    for line in httpx.get(f"{api}/metrics", timeout=5).text.splitlines():
        if line.startswith("camfleet_controller_frames_stored_total"):
            stored += float(line.rsplit(" ", 1)[1])
    return {"devices": len(items), "states": states, "frames_stored": int(stored)}


# The status table: one row every few seconds, the header once; fixed widths keep it aligned.
STATES = ("online", "asleep", "overdue", "offline")
STATUS_HEADER = (
    f"{'time':>6}  {'devices':>7}  "
    + "  ".join(f"{s:>7}" for s in STATES)
    + f"  {'frames stored':>13}  capture"
)


def status_row(elapsed_s: float, st: dict[str, Any], command: str) -> str:
    counts = "  ".join(f"{st['states'].get(s, 0):>7}" for s in STATES)
    return (
        f"{elapsed_s:>5.0f}s  {st['devices']:>7}  {counts}  {st['frames_stored']:>13}  "
        f"{command or '-'}"
    ).rstrip()


@click.command()
@click.option(
    "--cameras",
    type=click.IntRange(0, 50),
    default=2,
    show_default=True,
    help="Linux edge agents with the synthetic camera.",
)
@click.option(
    "--esp32",
    type=click.IntRange(0, 200),
    default=3,
    show_default=True,
    help="Simulated ESP32-CAM nodes (real node code under MicroPython).",
)
@click.option(
    "--http",
    default="127.0.0.1:8080",
    show_default=True,
    help="Controller API address (HOST:PORT; port 0 = any free port).",
)
@click.option("--broker-port", type=int, default=0, help="Broker port (default: a free port).")
@click.option("--embedded-broker", is_flag=True, help="Use the pure-Python broker, not mosquitto.")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Working directory (wiped at start unless --keep).",
)
@click.option("--keep", is_flag=True, help="Keep the data of a previous demo run.")
@click.option(
    "--secure",
    is_flag=True,
    help="The prod broker profile: TLS, no anonymous clients, every device enrolled with its "
    "own identity and key (camfleet device add), signed receipts, commands and config.",
)
@click.option("--duration", type=float, default=0, help="Stop after N seconds (0 = until Ctrl-C).")
@click.option(
    "--interval",
    type=float,
    default=3.0,
    show_default=True,
    help="Seconds between captures of the edge agents.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Status and summary as one JSON object a line on stdout (start-up lines go to stderr).",
)
def demo(
    cameras: int,
    esp32: int,
    http: str,
    broker_port: int,
    embedded_broker: bool,
    data: Path,
    keep: bool,
    duration: float,
    interval: float,
    secure: bool,
    as_json: bool,
) -> None:
    """Run broker + controller + simulated cameras on this machine.

    Open the printed API address (/docs for the OpenAPI UI), or in another terminal:
    camfleet devices, camfleet frames ls, camfleet proto watch --broker <printed URL>.
    """

    def say(text: str) -> None:
        click.echo(text, err=as_json)

    host, _, port_text = http.rpartition(":")
    try:
        port = int(port_text) or free_port()
    except ValueError:
        raise UserError(f"invalid --http {http!r}: use HOST:PORT") from None
    api = f"http://{host or '127.0.0.1'}:{port}"
    # Everything that can refuse comes before the wipe: a second demo must leave a running
    # one's data (and its controller's files) alone.
    try:
        lock_fd = lock_file(data / LOCK_NAME, f"pid {os.getpid()}")
    except LockHeld as held:
        raise UserError(
            f"another demo is running from {data} ({held.holder}): stop it, or pass --data DIR"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot use {data}: {exc}") from None
    check_port_free(host or "127.0.0.1", port)
    if not keep:
        wipe(data)
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    if secure:
        if embedded_broker:
            raise UserError("--secure needs mosquitto (its dynamic security plugin and TLS)")
        secured = SecureDemo(data, broker_port)
        broker: Mosquitto | EmbeddedBroker = secured.broker
    else:
        secured = None
        broker = (
            EmbeddedBroker(broker_port or None)
            if embedded_broker
            else Mosquitto(data / "broker", broker_port or None)
        )
    try:
        broker.start()
    except UserError:
        if secured is not None:
            raise
        # the launcher found no mosquitto: the embedded broker runs anywhere
        say("mosquitto is not installed: using the embedded amqtt broker (slower)")
        broker = EmbeddedBroker(broker_port or None)
        broker.start()
    except RuntimeError as exc:  # installed, but it did not start (port taken, bad config)
        raise UserError(str(exc).splitlines()[0]) from None
    kind = "Mosquitto" if isinstance(broker, Mosquitto) else type(broker).__name__
    say(f"broker      {broker.url} ({kind})")
    if secured is not None:
        say(f"            {secured.tls_url} for devices (prod profile: {secured.dir.path})")
    controller_broker = secured.controller_url if secured is not None else broker.url

    procs = Processes(logs)
    command_id = ""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        controller = procs.start(
            "controller",
            "controller",
            "run",
            "--broker",
            controller_broker,
            "--data",
            str(data / "controller"),
            "--http",
            f"{host or '127.0.0.1'}:{port}",
            "--log-level",
            "warning",
        )
        wait_healthy(api, controller, 60)
        token_file = data / "controller" / "api-token"
        try:
            token = token_file.read_text().strip()
        except FileNotFoundError:  # what answered /health is not our controller
            raise UserError(
                f"the controller wrote no API token ({token_file}): see {controller.log}"
            ) from None
        say(f"controller  {api}  (OpenAPI UI: {api}/docs; API token in {token_file})")
        for i in range(cameras):
            config = data / f"edge-{i}" / "edge.toml"
            if secured is not None:
                url, key = secured.enrol(f"demo-cam-{i}")
                edge_config(config, f"demo-cam-{i}", url, i, interval, key, secured.dir.ca_file)
            else:
                edge_config(config, f"demo-cam-{i}", broker.url, seed=i, interval_s=interval)
            procs.start(f"edge-{i}", "edge", "run", "--config", str(config))
        if cameras:
            say(
                f"edge        {cameras} agent(s) demo-cam-0.., "
                f"synthetic camera every {interval:g} s"
            )
        if esp32:

            def queue_capture() -> str:
                # A capture for a node that will sleep most of the time: it waits in the node's
                # session (or is published again after the node's first birth) and runs.
                created = httpx.post(
                    f"{api}/api/v1/commands",
                    json={"device": "demo-esp32-0", "action": "capture"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                )
                created.raise_for_status()
                return str(created.json()["items"][0]["id"])

            if secured is None:
                command_id = queue_capture()  # before the node ever connected
            procs.start(
                "esp32-sim",
                "sim",
                "esp32",
                "--count",
                str(esp32),
                "--broker",
                broker.url,
                "--prefix",
                "demo-esp32",
                "--interval",
                "300",
                "--time-scale",
                "0.01",
                "--state-dir",
                str(data / "esp32"),
                *(
                    ("--keys-in", str(data / "controller"), "--enrol-on", str(secured.dir.path))
                    if secured is not None
                    else ()
                ),
            )
            if secured is not None:
                # An enrolled node acts only on what is signed with its key, which the sim
                # creates when it enrols the node: queue the command once the node is known.
                wait_known(api, "demo-esp32-0", procs, 60)
                command_id = queue_capture()
            say(
                f"esp32       {esp32} node(s) demo-esp32-0.., "
                "waking every 300 s simulated (3 s real)"
            )
            say(f"command     capture {command_id} queued for demo-esp32-0 (runs once it wakes)")
        say(f"logs        {logs}/")
        watch = (
            f'"$(camfleet broker url --config {secured.dir.path} --identity dashboard)"'
            if secured is not None
            else broker.url
        )
        say(
            f"try         camfleet devices --api {api}\n"
            f"            camfleet proto watch --broker {watch}"
        )
        say("Ctrl-C stops the demo.\n")
        if not as_json:
            click.echo(STATUS_HEADER)
        started = time.monotonic()
        last: dict[str, Any] = {}
        command_status = ""
        while not stop.wait(next_row_in(started, duration)):
            dead = procs.dead()
            if dead:
                raise UserError(f"{dead[0].name} exited unexpectedly: see {dead[0].log}")
            last = status(api)
            if command_id:
                command_status = httpx.get(f"{api}/api/v1/commands/{command_id}", timeout=5).json()[
                    "status"
                ]
            elapsed = time.monotonic() - started
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "elapsed_s": round(elapsed, 1),
                            **last,
                            "capture": {"id": command_id, "status": command_status}
                            if command_id
                            else None,
                        },
                        sort_keys=True,
                    )
                )
            else:
                command = f"{command_id} {command_status}" if command_id else ""
                click.echo(status_row(elapsed, last, command))
            if duration and time.monotonic() - started >= duration:
                break
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping ...")
        procs.stop()
        broker.stop()
        os.close(lock_fd)
    if duration and not last.get("frames_stored"):
        raise UserError("the demo stored no frame: see the logs in " + str(logs))
    if as_json:
        summary = {
            "frames_stored": last.get("frames_stored", 0),
            "data": str(data / "controller"),
            "capture": {"id": command_id, "status": command_status} if command_id else None,
        }
        click.echo(json.dumps({"done": summary}, sort_keys=True))
        return
    click.echo(f"done: {last.get('frames_stored', 0)} frames stored in {data / 'controller'}")
    if command_id:
        click.echo(f"capture command {command_id} for sleeping node demo-esp32-0: {command_status}")
