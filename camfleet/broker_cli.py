"""``camfleet broker run``: a local mosquitto with camfleet's settings, in the foreground."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from camfleet.embedded_broker import EmbeddedBroker
from camfleet.errors import UserError
from camfleet.mosquitto import Mosquitto


@click.group()
def broker() -> None:
    """Run a local MQTT broker configured for camfleet (development and single-box installs)."""


@broker.command()
@click.option("--port", type=int, default=1883, show_default=True, help="TCP port on 127.0.0.1.")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/broker"),
    show_default=True,
    help="Directory for the config, persistence and log (mosquitto.log, rotated at 10 MB, 3 kept).",
)
@click.option(
    "--embedded", is_flag=True, help="Use the built-in pure-Python broker (amqtt), not mosquitto."
)
def run(port: int, data: Path, embedded: bool) -> None:
    """Run the broker until Ctrl-C. mosquitto: broker_config/dev.conf + a listener + persistence."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    server: Mosquitto | EmbeddedBroker = (
        EmbeddedBroker(port) if embedded else Mosquitto(data, port, log_file=data / "mosquitto.log")
    )
    try:
        server.start()
    except RuntimeError as exc:  # its first line names the cause (mosquitto's own words)
        raise UserError(str(exc).splitlines()[0]) from None
    click.echo(f"broker listening on {server.url} (Ctrl-C to stop)")
    proc = server.proc if isinstance(server, Mosquitto) else None
    if proc is not None:  # a mosquitto that dies (kill -9, crash) ends this command with an error
        threading.Thread(target=lambda: (proc.wait(), stop.set()), daemon=True).start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        died = proc is not None and proc.poll() is not None
        server.stop()
    if died:
        assert proc is not None
        raise UserError(f"mosquitto exited unexpectedly (exit status {proc.returncode})")
