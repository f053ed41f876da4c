"""``camfleet ota``: artifacts, signing keys, device keys and rollouts, over the controller API.

``keygen`` and ``sign`` run espsecure (the esptool package) on this machine: the release private
key stays where you sign, the controller only ever gets the public key.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from camfleet.api_client import Api, _when, api_options, emit, table
from camfleet.errors import UserError

_ARTIFACT_COLS = [
    ("ARTIFACT", "id"),
    ("KIND", "kind"),
    ("VERSION", "version"),
    ("PROJECT", "project"),
    ("CHIP", "chip"),
    ("SIZE", "size"),
    ("SHA256", "sha256"),
    ("UPLOADED", "created_ms"),
]
_ROLLOUT_COLS = [
    ("ROLLOUT", "id"),
    ("ARTIFACT", "artifact_id"),
    ("VERSION", "version"),
    ("TARGET", "target"),
    ("STATE", "state"),
    ("PHASE", "phase"),
    ("REASON", "reason"),
]
_DEVICE_COLS = [
    ("DEVICE", "device_id"),
    ("PHASE", "phase"),
    ("STATUS", "shown"),
    ("FROM", "from_version"),
    ("RUNS", "firmware"),
    ("BLOCKS", "blocks"),
    ("TRIES", "attempts"),
    ("DETAIL", "detail"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def ota() -> None:
    """Firmware over the air: signed artifacts and staged rollouts."""


def _espsecure(*args: str) -> None:
    run = subprocess.run([sys.executable, "-m", "espsecure", *args], capture_output=True, text=True)
    if run.returncode != 0:
        lines = (run.stderr or run.stdout).strip().splitlines()
        raise UserError(f"espsecure {args[0]} failed: {lines[-1] if lines else run.returncode}")


@ota.command()
@click.argument("keyfile", type=click.Path(dir_okay=False, path_type=Path))
def keygen(keyfile: Path) -> None:
    """Make a release signing key (RSA-3072, Secure Boot V2) and KEYFILE.pub.pem beside it.

    Keep KEYFILE off the controller; give the controller the .pub.pem (ota_public_key).
    """
    if keyfile.exists():
        raise UserError(f"{keyfile} exists: refusing to overwrite a signing key")
    _espsecure("generate-signing-key", "--version", "2", "--scheme", "rsa3072", str(keyfile))
    pub = keyfile.with_name(keyfile.name + ".pub.pem")
    _espsecure("extract-public-key", "--version", "2", "--keyfile", str(keyfile), str(pub))
    click.echo(f"private key {keyfile} (keep it off the controller); public key {pub}")


@ota.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--keyfile", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def sign(image: Path, keyfile: str, output: Path) -> None:
    """Sign an ESP32 app IMAGE (espsecure sign-data --version 2) into OUTPUT."""
    _espsecure(
        "sign-data", "--version", "2", "--keyfile", keyfile, "--output", str(output), str(image)
    )
    click.echo(f"signed {image} -> {output} ({output.stat().st_size} bytes)")


@ota.command("edge-keygen")
@click.argument("keyfile", type=click.Path(dir_okay=False, path_type=Path))
def edge_keygen(keyfile: Path) -> None:
    """Make an Ed25519 release key for edge-agent bundles (KEYFILE, PEM, mode 600) and print
    its public key: the value of the agents' [agent] update_public_key and of the controller's
    ota_edge_public_key (also written to KEYFILE.pub). Keep KEYFILE off the controller."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from camfleet.atomic import atomic_write
    from camfleet.edge import update

    if keyfile.exists():
        raise UserError(f"{keyfile} exists: refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write(keyfile, pem, mode=0o600)
    public = update.public_key_text(key)
    atomic_write(keyfile.with_name(keyfile.name + ".pub"), (public + "\n").encode())
    click.echo(f"private key {keyfile} (keep it off the controller); public key: {public}")


def _edge_key(keyfile: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(keyfile.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{keyfile}: not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{keyfile}: not an Ed25519 key (make one with camfleet ota edge-keygen)")
    return key


@ota.command("edge-bundle")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--version", "version", required=True, help="The version agents will report.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def edge_bundle(source: Path, version: str, output: Path) -> None:
    """Make an edge-agent bundle of SOURCE: a camfleet wheel (.whl) or a directory holding the
    camfleet package (e.g. an unpacked wheel). Sign it with `camfleet ota edge-sign`."""
    import zipfile

    from camfleet.edge import update

    files: dict[str, bytes] = {}
    if source.is_dir():
        for f in sorted(source.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                files[f.relative_to(source).as_posix()] = f.read_bytes()
    else:
        try:
            with zipfile.ZipFile(source) as wheel:
                for name in wheel.namelist():
                    if not name.endswith("/"):
                        files[name] = wheel.read(name)
        except zipfile.BadZipFile:
            raise UserError(f"{source}: neither a directory nor a wheel (zip)") from None
    if "camfleet/__init__.py" not in files:
        raise UserError(f"{source}: no camfleet/__init__.py: a bundle carries the camfleet package")
    data = update.make_bundle(version, files)
    output.write_bytes(data)
    click.echo(f"bundle {output}: camfleet {version}, {len(files)} files, {len(data)} bytes")


@ota.command("edge-sign")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--keyfile", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def edge_sign(bundle: Path, keyfile: Path, output: Path) -> None:
    """Sign an edge-agent BUNDLE: OUTPUT gets the detached Ed25519 signature (64 bytes) of its
    SHA-256, for `camfleet ota upload BUNDLE --signature OUTPUT`."""
    from camfleet.edge import update

    _digest, signature = update.sign(_edge_key(keyfile), bundle.read_bytes())
    output.write_bytes(signature)
    click.echo(f"signed {bundle} -> {output}")


@ota.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", help="Refuse the artifact unless its own version is this.")
@click.option(
    "--signature",
    "signature_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Edge bundles: the detached Ed25519 signature (64 raw bytes, `camfleet ota edge-sign`).",
)
@api_options
def upload(
    file: Path,
    version: str | None,
    signature_path: Path | None,
    api: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Upload a signed ESP32 app image, or an edge-agent bundle with --signature; the controller
    verifies it before storing it."""
    size = file.stat().st_size
    params = {"filename": file.name, **({"version": version} if version else {})}
    if signature_path is not None:
        params["signature"] = signature_path.read_bytes().hex()

    def body() -> Iterator[bytes]:
        # transient: the bar goes away when the body is sent; the answer (or refusal) stays alone
        with open(file, "rb") as f, _progress(disable=as_json, transient=True) as bar:
            task = bar.add_task(f"uploading {file.name}", total=size)
            while chunk := f.read(64 * 1024):
                bar.advance(task, len(chunk))
                yield chunk

    data = Api(api, token).json("POST", "/api/v1/ota/artifacts", params=params, content=body())
    emit(data, as_json, _render_upload)


def _render_upload(d: dict[str, Any]) -> str:
    head = ("stored " if d["created"] else "already stored as ") + f"{d['id']}: "
    if d["kind"] == "edge-bundle":
        return head + f"edge bundle {d['project']} {d['version']}, {d['size']} bytes"
    return head + f"{d['project']} {d['version']} for {d['chip']}, {d['size']} bytes"


def _progress(disable: bool = False, transient: bool = False) -> Any:
    """A rich progress display on stderr (stdout stays clean for --json and pipes)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=disable,
        transient=transient,
    )


@ota.command("ls")
@api_options
def ls(api: str, token: str | None, as_json: bool) -> None:
    """List artifacts."""
    items = Api(api, token).json("GET", "/api/v1/ota/artifacts")["items"]
    emit(items, as_json, lambda i: table(i, _ARTIFACT_COLS) if i else "no artifacts")


@ota.command("rm")
@click.argument("artifact_id")
@api_options
def rm(artifact_id: str, api: str, token: str | None, as_json: bool) -> None:
    """Remove an artifact no active rollout uses."""
    data = Api(api, token).json("DELETE", f"/api/v1/ota/artifacts/{artifact_id}")
    emit(data, as_json, lambda d: f"removed {artifact_id}")


@ota.command("key")
@click.argument("device")
@click.option("--hex", "key_hex", required=True, help="The device's NVS hmac_key, in hex.")
@api_options
def key(device: str, key_hex: str, api: str, token: str | None, as_json: bool) -> None:
    """Register DEVICE's HMAC key (the one provisioned in its NVS): offers are signed with it."""
    data = Api(api, token).json(
        "PUT", f"/api/v1/ota/device-keys/{device}", json={"hmac_key_hex": key_hex}
    )
    emit(data, as_json, lambda d: f"key of {device} registered")


@ota.group()
def rollout() -> None:
    """Staged rollouts: create, pause, resume, abort, status, ls."""


@rollout.command("create")
@click.option("--artifact", required=True)
@click.option("--target", required=True, help="group:G, devices:a,b or all")
@click.option("--only-version", help="Only devices running this version.")
@click.option("--canary", default=0, show_default=True, help="Devices updated first, alone.")
@click.option("--phases", default="100%", show_default=True, help="Cumulative, e.g. 10%,50%,100%")
@click.option("--max-failure", default="10%", show_default=True)
@click.option("--min-sample", default=3, show_default=True)
@click.option("--device-timeout", default="2h", show_default=True)
@click.option("--retries", default=0, show_default=True)
@click.option("--rate", help="Offers per time, e.g. 20/min.")
@click.option("--manual-gate", is_flag=True, help="Wait for `resume` between phases.")
@click.option("--allow-downgrade", is_flag=True)
@api_options
def rollout_create(api: str, token: str | None, as_json: bool, **opts: Any) -> None:
    """Start a rollout of an artifact to a target."""
    body = {k: v for k, v in opts.items() if v is not None}
    data = Api(api, token).json("POST", "/api/v1/ota/rollouts", json=body)
    emit(data, as_json, _render_status)


def _control(action: str) -> Any:
    @rollout.command(action, help=f"{action.capitalize()} a rollout.")
    @click.argument("rollout_id")
    @api_options
    def run(rollout_id: str, api: str, token: str | None, as_json: bool) -> None:
        data = Api(api, token).json("POST", f"/api/v1/ota/rollouts/{rollout_id}/{action}")
        emit(data, as_json, lambda d: f"rollout {rollout_id}: {d['state']}")

    return run


for _action in ("pause", "resume", "abort"):
    _control(_action)


@rollout.command("ls")
@api_options
def rollout_ls(api: str, token: str | None, as_json: bool) -> None:
    """List rollouts."""
    items = Api(api, token).json("GET", "/api/v1/ota/rollouts")["items"]
    emit(items, as_json, lambda i: table(i, _ROLLOUT_COLS) if i else "no rollouts")


def _render_status(d: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(d["counts"].items()))
    head = f"rollout {d['id']}: {d['artifact_id']} ({d['version']}) to {d['target']}: {d['state']}"
    head += f", phase {d['phase']}" + (f" — {d['reason']}" if d["reason"] else "")
    rows = [
        {**x, "blocks": f"{x['blocks_done']}/{x['blocks_total']}" if x["blocks_total"] else ""}
        for x in d["devices"]
    ]
    return f"{head}\n{counts}\n{table(rows, _DEVICE_COLS)}"


@rollout.command("status")
@click.argument("rollout_id")
@click.option(
    "--watch", is_flag=True, help="Follow it (progress bars, device steps) until it ends."
)
@click.option("--interval", default=2.0, show_default=True, help="Seconds between polls.")
@api_options
def rollout_status(
    rollout_id: str, watch: bool, interval: float, api: str, token: str | None, as_json: bool
) -> None:
    """Show a rollout: state, phase, each device's step; --watch follows it (with --json: one
    JSON object per device step, a line each)."""
    client = Api(api, token)
    data = client.json("GET", f"/api/v1/ota/rollouts/{rollout_id}")
    if not watch:
        emit(data, as_json, _render_status)
        return
    if as_json:
        _watch(client, rollout_id, data, interval, _JsonSteps(rollout_id))
        return
    with _LiveStatus() as live:
        data = _watch(client, rollout_id, data, interval, live)
    click.echo(_render_status(data))


def _watch(client: Api, rid: str, data: dict[str, Any], interval: float, out: Any) -> Any:
    """Poll until the rollout leaves running/gated; each new step and status goes to ``out``."""
    since = 0
    while True:
        for e in data["events"]:
            out.step(e)
            since = max(since, e["ts_ms"] + 1)
        out.status(data)
        if data["state"] not in ("running", "gated"):
            return data
        time.sleep(interval)  # polling an HTTP API: the user chose the interval
        data = client.json("GET", f"/api/v1/ota/rollouts/{rid}", params={"since_ms": since})


class _JsonSteps:
    def __init__(self, rid: str) -> None:
        self.rid = rid

    def step(self, e: dict[str, Any]) -> None:
        click.echo(json.dumps({"rollout": self.rid, **e}, sort_keys=True))

    def status(self, data: dict[str, Any]) -> None:
        pass


def _step_line(e: dict[str, Any]) -> str:
    who = e["device_id"] or "rollout"
    return f"{_when(e['ts_ms'])}  {who}: {e['step']}" + (f" ({e['detail']})" if e["detail"] else "")


class _LiveStatus:
    """Progress bars while watching: the rollout (devices finished of those it updates) and
    one per device in flight (blocks downloaded), with the device steps printed above them.
    Transient: once the rollout ends, the bars give way to the final table. Without a terminal
    rich draws no bars, so a pipe gets the step lines and the table only."""

    FINISHED = ("succeeded", "failed", "rolled_back")

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            console=Console(),
            transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _LiveStatus:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def step(self, e: dict[str, Any]) -> None:
        self.progress.console.print(_step_line(e), markup=False, highlight=False)

    def status(self, data: dict[str, Any]) -> None:
        devices = [d for d in data["devices"] if d["status"] != "skipped"]
        done = sum(1 for d in devices if d["status"] in self.FINISHED)
        state = data["state"] + (f": {data['reason']}" if data["reason"] else "")
        self._update(f"rollout {data['id']}", len(devices) or 1, done, state)
        for d in devices:
            if d["status"] == "pending":
                continue
            total = d["blocks_total"] or 1
            blocks = total if d["status"] in ("succeeded", "rebooting") else d["blocks_done"]
            self._update(f"  {d['device_id']}", total, blocks, d["shown"])

    def _update(self, name: str, total: int, completed: int, state: str) -> None:
        task = self.tasks.get(name)
        if task is None:
            self.tasks[name] = self.progress.add_task(
                name, total=total, completed=completed, state=state
            )
        else:
            self.progress.update(task, total=total, completed=completed, state=state)
