"""``camfleet controller run``: the controller service from the command line.

Settings come from (lowest first) built-in defaults, a TOML config file (``--config`` or
CAMFLEET_CONFIG), environment variables CAMFLEET_<NAME>, and these options.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

import click

from camfleet.controller import config as config_mod
from camfleet.dirlock import LockHeld, lock_file
from camfleet.errors import UserError
from camfleet.mqtt_url import redacted
from camfleet.user_config import save_token

_OPTIONS: list[tuple[str, Any, str]] = [
    ("broker", str, "Broker URL mqtt://[user[:pw]@]host[:port] (mqtts:// for TLS)."),
    ("data", click.Path(path_type=Path), "Data directory: registry, frames, token, instance id."),
    ("database", str, "Registry: '' = SQLite in DATA, sqlite:///PATH or postgresql://..."),
    ("http", str, "HTTP API address HOST:PORT ('' disables the API)."),
    ("root", str, "Topic root."),
    ("share_group", str, "Shared-subscription group for frames ('' = plain subscription)."),
    ("mqtt_protocol", click.Choice(["auto", "5", "3.1.1"]), "MQTT protocol version."),
    ("receive_maximum", int, "MQTT 5 Receive Maximum (un-acknowledged deliveries in flight)."),
    ("client_id", str, "MQTT client id (default: camfleet-controller-<instance id>)."),
    ("token", str, "API bearer token for write endpoints (default: generated into DATA)."),
    ("home_assistant", bool, "Publish Home Assistant latest-JPEG and discovery topics."),
    ("ha_prefix", str, "Home Assistant discovery prefix."),
    ("jpeg_prefix", str, "Prefix of the retained latest-JPEG topics."),
    ("ha_state_prefix", str, "Prefix of the availability/telemetry/button topics for HA."),
    ("telemetry_history", int, "Telemetry rows kept per device."),
    ("event_history", int, "Event rows kept per device."),
    ("command_history", int, "Finished commands kept per device (0 = no count limit)."),
    (
        "command_history_days",
        float,
        "Finished commands kept at most this many days (0 = no age limit).",
    ),
    ("command_resend_s", float, "Republish a queued command whose PUBACK did not come by then."),
    ("tick_s", float, "Period of the scheduler / expiry / reassembly tick."),
    ("batch_max", int, "Most jobs per group commit."),
    ("file_threads", int, "Threads writing frame files behind the frame log."),
    ("decode_thread", bool, "Decode and SHA-256-check frames off the network thread."),
    ("chunk_timeout_s", float, "Seconds an incomplete chunked frame may wait for its chunks."),
    ("command_expiry_s", float, "Default command expiry in seconds (0 = never)."),
    ("misfire_grace_s", float, "A missed schedule slot still fires if at most this old."),
    ("overdue_grace_s", float, "A sleeping device is 'overdue' this long after its next wake."),
    ("retention_interval_s", float, "Seconds between retention runs."),
    ("disk_budget_bytes", int, "Disk budget of the whole frame store (0 = none)."),
    ("disk_low_bytes", int, "Free bytes under which frames are refused (device keeps them)."),
    ("disk_resume_bytes", int, "Free bytes at which frames are accepted again."),
    ("chunk_sets_per_device", int, "Incomplete chunked frames held per device."),
    ("log_level", click.Choice(["debug", "info", "warning", "error"]), "Log level."),
    ("ota_public_key", str, "PEM file of the firmware release public key (RSA-3072, SB V2)."),
    (
        "ota_edge_public_key",
        str,
        "Ed25519 release public key of edge bundles (base64, as the agents' update_public_key).",
    ),
    ("ota_max_transfers", int, "Devices served OTA blocks at a time."),
    ("ota_blocks_per_s", float, "OTA blocks published per second, all devices together."),
]


def _with_options(fn: Any) -> Any:
    for name, kind, help_text in reversed(_OPTIONS):
        flag = "--" + name.replace("_", "-")
        env = f"CAMFLEET_{name.upper()}"
        default = getattr(config_mod.ControllerConfig(), name)
        shown = repr(str(default)) if isinstance(default, Path) else repr(default)
        if kind is bool:
            fn = click.option(
                f"{flag}/--no-{flag[2:]}",
                name,
                default=None,
                help=f"{help_text} [env {env}; default {'on' if default else 'off'}]",
            )(fn)
        else:
            fn = click.option(
                flag,
                name,
                type=kind,
                default=None,
                help=f"{help_text} [env {env}; default {shown}]",
            )(fn)
    return fn


def lock_name(client_id: str) -> str:
    """The lock file in DATA for a controller with this --client-id ('' = the default id)."""
    if not client_id:
        return "controller.lock"
    return "controller-" + re.sub(r"[^A-Za-z0-9_.-]", "_", client_id) + ".lock"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def controller() -> None:
    """The camfleet controller: ingest, registry, commands, schedules, HTTP API."""


@controller.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML config file ([controller] settings, [retention] policies) [env CAMFLEET_CONFIG].",
)
@_with_options
def run(config_file: Path | None, **options: Any) -> None:
    """Run the controller until SIGINT/SIGTERM.

    Example: camfleet controller run --broker mqtt://127.0.0.1:1883 --data ./data
    --http 127.0.0.1:8080
    """
    cfg = config_mod.load(config_file, options)
    logging.basicConfig(
        level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from camfleet.controller.memory import keep_freed_memory
    from camfleet.controller.service import Controller
    from camfleet.controller.storage.migrations import SchemaTooNew

    keep_freed_memory()  # a process of its own: frame buffers are reused, not re-faulted
    # Before anything connects or writes: a second controller on the same DATA with the same
    # MQTT client id (the default one comes from DATA/instance-id) would take over the first
    # one's session, each kicking the other off the broker. Controllers sharing DATA with
    # client ids of their own (docs/controller.md, Scale-out) each take their own lock.
    try:
        lock_fd = lock_file(Path(cfg.data) / lock_name(cfg.client_id), f"pid {os.getpid()}")
    except LockHeld as held:
        raise UserError(
            f"another controller uses {cfg.data} with the same MQTT client id ({held.holder}): "
            "stop it, or give this one a --data (or a --client-id) of its own"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot use data directory {cfg.data}: {exc}") from None
    try:
        ctl = Controller(cfg)
    except (OSError, sqlite3.DatabaseError) as exc:
        raise UserError(f"cannot use data directory {cfg.data}: {exc}") from None
    except SchemaTooNew as exc:
        raise UserError(f"{exc}: upgrade camfleet") from None
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):  # PostgreSQL unreachable or refused us
            raise UserError(f"cannot use database {cfg.database}: {exc}") from None
        raise
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ctl.start()
    if cfg.http:
        host, port = cfg.http_host_port
        click.echo(f"camfleet controller: API on http://{host}:{port}")
        # Where the token is, never the token itself (stdout ends up in logs); and saved where
        # `camfleet capture ...` on this machine looks for it.
        if not cfg.token:
            made = "generated into" if ctl.token_generated else "kept in"
            click.echo(f"camfleet controller: API token {made} {cfg.data}/api-token (mode 600)")
        try:
            saved = save_token(host, port, ctl.token)
        except OSError as exc:  # a read-only home must not stop the controller
            click.echo(f"camfleet controller: could not save the API token for this user: {exc}")
        else:
            click.echo(f"camfleet controller: API token saved for this user in {saved}")
    click.echo(f"camfleet controller: ingesting from {redacted(cfg.broker)}; data in {cfg.data}")
    stop.wait()
    ctl.stop()
    os.close(lock_fd)
