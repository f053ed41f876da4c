"""``camfleet broker run``: a local mosquitto with camfleet's settings, in the foreground."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import click

from camfleet.broker_config.profiles import (
    PROFILES,
    BrokerDir,
    ConfiguredMosquitto,
    init_broker,
    listening,
    url_with_password,
)
from camfleet.embedded_broker import EmbeddedBroker
from camfleet.errors import UserError
from camfleet.mosquitto import Mosquitto


@click.group()
def broker() -> None:
    """Run a local MQTT broker configured for camfleet (development and single-box installs)."""


@broker.command()
@click.option(
    "--port",
    type=int,
    default=None,
    help="TCP port on 127.0.0.1 [default: 1883, or the --config directory's plain listener].",
)
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
@click.option(
    "--config",
    "config_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run mosquitto from a `camfleet broker init` directory (dev or prod profile).",
)
def run(port: int | None, data: Path, embedded: bool, config_dir: Path | None) -> None:
    """Run the broker until Ctrl-C: mosquitto with broker_config/ (dev profile), a listener and
    persistence, or the configuration in --config DIR."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    server: Mosquitto | EmbeddedBroker
    if config_dir is not None:
        if embedded:
            raise UserError("--config runs mosquitto; it cannot be combined with --embedded")
        server = ConfiguredMosquitto(config_dir, port)
    elif embedded:
        server = EmbeddedBroker(port or 1883)
    else:
        server = Mosquitto(data, port or 1883, log_file=data / "mosquitto.log")
    try:
        server.start()
    except RuntimeError as exc:  # its first line names the cause (mosquitto's own words)
        raise UserError(str(exc).splitlines()[0]) from None
    click.echo(f"broker listening on {server.url} (Ctrl-C to stop)")
    if isinstance(server, ConfiguredMosquitto):
        settings = server.broker_dir.settings
        # The prod profile's listeners for devices, as mosquitto opened them.
        for other, what in (
            (settings.tls_port, "MQTT over TLS"),
            (settings.cert_port, "MQTT over TLS, client certificate as identity"),
            (settings.websockets_port, "MQTT over secure websockets"),
        ):
            if other is not None and listening(other):
                click.echo(f"       and on port {other} ({what})")
        ws_port = settings.websockets_port
        if ws_port is not None and not listening(ws_port):
            click.echo(
                f"warning: no websockets listener on port {ws_port}: this mosquitto is built "
                "without websockets (the eclipse-mosquitto image has them)",
                err=True,
            )
    proc = server.proc if isinstance(server, Mosquitto) else None
    if proc is not None:  # a mosquitto that dies (kill -9, crash) ends this command with an error

        def watch(p: subprocess.Popen[str]) -> None:
            p.wait()
            stop.set()

        threading.Thread(target=watch, args=(proc,), daemon=True).start()
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


@broker.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--profile",
    type=click.Choice(PROFILES),
    default="prod",
    show_default=True,
    help="prod: TLS, no anonymous clients, one identity per device; dev: anonymous, loopback only.",
)
@click.option(
    "--port", type=int, default=1883, show_default=True, help="Plain listener (loopback)."
)
@click.option("--tls-port", type=int, default=8883, show_default=True, help="TLS listener (prod).")
@click.option(
    "--cert-port",
    type=int,
    default=8884,
    show_default=True,
    help="TLS listener where a client certificate is the identity (prod, `device add --cert`).",
)
@click.option(
    "--websockets",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Secure websockets listener (prod). auto: only if this machine's mosquitto has them; "
    "on: always (e.g. a config for the eclipse-mosquitto image).",
)
@click.option("--websockets-port", type=int, default=9001, show_default=True)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Extra name or IP address in the server certificate (repeatable).",
)
@click.option("--root", default="camfleet", show_default=True, help="Topic root.")
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite an existing configuration (refused while a broker runs from it).",
)
@click.option(
    "--container",
    default=None,
    metavar="PATH",
    help="Write it for a container that mounts DIRECTORY at PATH (docker-compose.yml uses "
    "/camfleet-broker): the image's plugin, paths under PATH, plain listener on its network.",
)
def init(
    directory: Path,
    profile: str,
    port: int,
    tls_port: int,
    cert_port: int,
    websockets: str,
    websockets_port: int,
    hosts: tuple[str, ...],
    root: str,
    force: bool,
    container: str | None,
) -> None:
    """Write a complete mosquitto configuration into DIRECTORY."""
    for line in init_broker(
        directory,
        profile,
        port,
        tls_port,
        websockets,
        websockets_port,
        hosts,
        root,
        force,
        container,
        cert_port,
    ):
        click.echo(line)


@broker.command()
@click.option(
    "--config",
    "config_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="A `camfleet broker init` directory.",
)
@click.option(
    "--identity",
    type=click.Choice(["controller", "dashboard", "homeassistant", "admin"]),
    default="controller",
    show_default=True,
)
@click.option("--tls", is_flag=True, help="The TLS listener's address instead of the loopback one.")
@click.option("--host", default="127.0.0.1", show_default=True)
def url(config_dir: Path, identity: str, tls: bool, host: str) -> None:
    """Print the broker URL (with the identity's password) for --broker options."""
    click.echo(url_with_password(BrokerDir.open(config_dir).url(identity, tls=tls, host=host)))
