"""``camfleet edge``: run the agent, check a config file, list camera backends."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import click

from camfleet.edge.cameras import BACKENDS
from camfleet.edge.cameras.settings import to_dict
from camfleet.edge.config import EdgeConfig, load_config
from camfleet.errors import UserError

CONFIG_OPTION = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("edge.toml"),
    show_default=True,
    help="Agent config file (TOML). See docs/edge.md and edge/edge.example.toml.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def edge() -> None:
    """The Linux edge agent: a Pi, MaixCAM or webcam box as a camfleet device."""


@edge.command()
@CONFIG_OPTION
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def run(config_path: Path, log_level: str) -> None:
    """Connect to the broker and capture, spool and publish frames until stopped (SIGTERM)."""
    from camfleet.edge import update
    from camfleet.edge.agent import EdgeAgent

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = load_config(config_path)
    slots = update.Slots(config.agent.state_dir, fsync=config.spool.fsync)
    running = os.environ.get(update.SLOT_ENV)
    if running is None:  # launcher: pick the slot (A/B, or the package) and run it
        slot = slots.boot()
        if slot is not None:
            update.exec_agent(slot)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent = EdgeAgent(config)
    logging.getLogger("camfleet.edge").info(
        "device %s: %s camera, broker %s, spool %s (%d frames waiting)",
        config.device.id,
        config.camera.backend,
        config.broker.url,
        config.spool.dir,
        agent.spool.depth,
    )
    agent.slots = slots
    if running is not None:  # births report the version of the slot this process runs
        pending = slots.pending
        slot_version = (
            pending["version"]
            if pending is not None and running == str(slots.path(pending["slot"]))
            else slots.state["version"]
        )
        agent.firmware_version = slot_version or agent.firmware_version
    if slots.failed is not None:  # in every birth until a newer version is confirmed
        agent.birth_info["update_failed_version"] = slots.failed["version"]
    check = update.HealthCheck(agent, slots, running, stop)
    check.start()
    agent.run(stop)
    agent.close()
    check.join()
    if check.failed or agent.reexec:
        # back through the launcher, which starts the previous slot after a failed health
        # check, or the newly installed one after a download (edge/ota.py)
        update.exec_agent(None)


@edge.command("install-update")
@CONFIG_OPTION
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--signature",
    "signature_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="Detached Ed25519 signature (64 raw bytes) of the bundle's SHA-256.",
)
def install_update(config_path: Path, bundle: Path, signature_path: Path) -> None:
    """Verify a self-update bundle and install it into the idle slot; the next start runs it."""
    from camfleet.edge import update

    config = load_config(config_path)
    if not config.agent.update_public_key:
        raise UserError(f"{config.source}: agent.update_public_key is not set: updates are off")
    data = bundle.read_bytes()
    try:
        manifest, files = update.verify(
            data,
            hashlib.sha256(data).digest(),
            signature_path.read_bytes(),
            update.load_public_key(config.agent.update_public_key),
        )
        slot = update.Slots(config.agent.state_dir).install(manifest, files)
    except update.UpdateError as exc:
        raise UserError(f"{bundle}: refused: {exc}") from None
    click.echo(f"installed {manifest.version} into {slot}; it runs at the next agent start")


@edge.command("check-config")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the validated config as JSON.")
@click.option(
    "--open-camera",
    is_flag=True,
    help="Also open the camera and check the settings against its capabilities.",
)
def check_config(config_path: Path, as_json: bool, open_camera: bool) -> None:
    """Validate a config file (and optionally the camera) without connecting."""
    config = load_config(config_path)
    if open_camera:
        from camfleet.edge import cameras
        from camfleet.edge.cameras.base import CameraError
        from camfleet.edge.cameras.settings import SettingsError

        camera = cameras.create(
            config.camera.backend, {"label": config.device.id, **config.camera.options}
        )
        try:
            with camera:
                camera.validate(config.camera.settings)
        except (CameraError, SettingsError) as exc:
            raise UserError(f"{config_path}: camera: {exc}") from None
    summary = describe(config)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        click.echo(
            f"{config_path}: OK: device {config.device.id}, {config.camera.backend} "
            f"camera, broker {config.broker.url}, spool {config.spool.dir}"
        )


@edge.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(config_path: Path, as_json: bool) -> None:
    """Show the agent's disk state: session number, spool depth and age (read-only, safe while
    the agent runs)."""
    from camfleet.edge.spool import scan
    from camfleet.edge.state import AgentState

    config = load_config(config_path)
    sizes = scan(config.spool.dir)
    keys = sorted(sizes)
    session_file = config.agent.state_dir / "session"
    info = {
        "device": config.device.id,
        "last_session": AgentState.read_session(session_file),
        "spool_dir": str(config.spool.dir),
        "spool_frames": len(keys),
        "spool_bytes": sum(sizes.values()),
        "oldest": f"{keys[0].session}-{keys[0].seq}" if keys else None,
        "newest": f"{keys[-1].session}-{keys[-1].seq}" if keys else None,
        "corrupt_files": len(list((config.spool.dir / "corrupt").glob("*.frame"))),
    }
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    click.echo(
        f"{info['device']}: session {info['last_session']}, {info['spool_frames']} frame(s) "
        f"({info['spool_bytes']} bytes) waiting for a receipt in {info['spool_dir']}"
        + (f", oldest {info['oldest']}, newest {info['newest']}" if keys else "")
        + (f", {info['corrupt_files']} corrupt" if info["corrupt_files"] else "")
    )


@edge.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def backends(as_json: bool) -> None:
    """List the camera backends (their libraries are imported only when used)."""
    if as_json:
        click.echo(json.dumps(sorted(BACKENDS)))
    else:
        for name in BACKENDS:
            click.echo(name)


def describe(config: EdgeConfig) -> dict[str, Any]:
    """The validated config as plain JSON-able values (defaults filled in)."""
    return {
        "source": config.source,
        "device": {
            "id": config.device.id,
            "board": config.device.board,
            "groups": list(config.device.groups),
            "location": config.device.location,
        },
        "broker": {
            "url": str(config.broker.url),
            "root": config.broker.root,
            "client_id": config.client_id,
            "keepalive_s": config.broker.keepalive_s,
            "max_payload": config.broker.max_payload,
        },
        "camera": {
            "backend": config.camera.backend,
            "settings": to_dict(config.camera.settings),
            "options": config.camera.options,
        },
        "frames": vars(config.frames),
        "spool": {
            "dir": str(config.spool.dir),
            "max_frames": config.spool.max_frames,
            "max_bytes": config.spool.max_bytes,
            "fsync": config.spool.fsync,
        },
        "schedule": vars(config.schedule),
        "agent": {
            "state_dir": str(config.agent.state_dir),
            "telemetry_interval_s": config.agent.telemetry_interval_s,
            "allow_machine_reboot": config.agent.allow_machine_reboot,
            "max_burst": config.agent.max_burst,
        },
    }
