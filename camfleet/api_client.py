"""CLI over the controller's HTTP API: ``camfleet devices | capture | config | schedule | frames``.

Every command takes ``--api URL`` (env CAMFLEET_API, default http://127.0.0.1:8080), ``--token``
(env CAMFLEET_TOKEN; needed to change things; without it, the token ``camfleet controller run``
saved for this user, see camfleet/user_config.py) and prints a table, or JSON with ``--json``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import httpx

from camfleet.errors import UserError
from camfleet.proto.topics import is_valid_device_id
from camfleet.user_config import load_token, token_file_for_api

DEFAULT_API = "http://127.0.0.1:8080"


class Api:
    def __init__(self, base: str, token: str | None) -> None:
        self.base = base.rstrip("/")
        self.token = token
        #: Where the token came from, for the message when the API refuses it.
        self.token_source = "--token or CAMFLEET_TOKEN"
        if not token:
            saved = load_token(self.base)
            if saved is not None:
                self.token, path = saved
                self.token_source = str(path)

    def request(
        self, method: str, path: str, allow_missing: bool = False, **kw: Any
    ) -> httpx.Response:
        """Send; a refusal or failure is a UserError (a 404 is returned if ``allow_missing``)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            resp = httpx.request(method, self.base + path, headers=headers, timeout=30, **kw)
        except httpx.HTTPError as exc:
            raise UserError(f"cannot reach the controller API at {self.base}: {exc}") from None
        if resp.status_code == 401:
            raise UserError(self._refused())
        if resp.status_code >= 400 and not (allow_missing and resp.status_code == 404):
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            if isinstance(detail, list):  # FastAPI validation errors
                detail = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
            raise UserError(f"{detail} (HTTP {resp.status_code})")
        return resp

    def _refused(self) -> str:
        if self.token:
            return f"the API at {self.base} refused the token from {self.token_source}"
        return (
            f"no API token was given and none is saved for {self.base}: pass --token or set "
            "CAMFLEET_TOKEN; the controller keeps it in DATA/api-token, and "
            f"`camfleet controller run` saves it for its user in {token_file_for_api(self.base)}"
        )

    def json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.request(method, path, **kw)
        return resp.json() if resp.content else None


def api_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)
    fn = click.option(
        "--token", envvar="CAMFLEET_TOKEN", default=None, help="API token [env CAMFLEET_TOKEN]."
    )(fn)
    fn = click.option(
        "--api",
        envvar="CAMFLEET_API",
        default=DEFAULT_API,
        show_default=True,
        help="Controller API URL [env CAMFLEET_API].",
    )(fn)
    return fn


def _when(ms: Any) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Aligned text table: columns are (header, key); values formatted by key suffix."""

    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        if key.endswith("_ms"):
            return _when(value)
        if isinstance(value, list):
            return ",".join(map(str, value)) or "-"
        return "-" if value is None or value == "" else str(value)

    cells = [[cell(r, k) for _, k in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip() for c in cells]
    return "\n".join(lines)


def emit(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else render(data))


# --- devices ----------------------------------------------------------------------------------


@click.command()
@click.option("--state", help="Only devices in this state (online, asleep, overdue, offline).")
@click.option("--group", help="Only members of this group.")
@api_options
def devices(
    state: str | None, group: str | None, api: str, token: str | None, as_json: bool
) -> None:
    """List the fleet's devices with their state."""
    params = {k: v for k, v in (("state", state), ("group", group)) if v}
    data = Api(api, token).json("GET", "/api/v1/devices", params=params)
    cols = [
        ("DEVICE", "device_id"),
        ("STATE", "state"),
        ("SESSION", "session"),
        ("FIRMWARE", "firmware"),
        ("PLATFORM", "platform"),
        ("GROUPS", "groups"),
        ("LAST SEEN", "last_seen_ms"),
        ("LAST FRAME", "last_frame_ms"),
    ]
    emit(data["items"], as_json, lambda items: table(items, cols) if items else "no devices")


# --- capture ----------------------------------------------------------------------------------


@click.command()
@click.argument("device", required=False)
@click.option("--group", help="Send to every member of this group instead of one device.")
@click.option("--count", default=1, show_default=True, help="Frames to capture.")
@click.option("--interval-ms", default=0, help="Between burst frames.")
@click.option("--expires", "expires_in_s", type=float, default=None, help="Seconds until expiry.")
@click.option(
    "--allow-unknown",
    is_flag=True,
    help="Queue it even if DEVICE was never enrolled and has never connected.",
)
@api_options
def capture(
    device: str | None,
    group: str | None,
    count: int,
    interval_ms: int,
    expires_in_s: float | None,
    allow_unknown: bool,
    api: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Ask DEVICE (or --group G) to capture now. A sleeping device runs it on its next wake."""
    if (device is None) == (group is None):
        raise UserError("give a DEVICE or --group GROUP (exactly one)")
    if device is not None and not is_valid_device_id(device):
        # Checked first: an id no device can have never connects, so --allow-unknown would not
        # help (the controller refuses it too).
        raise UserError(
            f"invalid device id {device!r}: use 1-64 of a-z 0-9 _ - (not starting with _)"
        )
    client = Api(api, token)
    if device is not None and not allow_unknown:
        # A typo would otherwise queue a command that no device ever takes, shown as "sent".
        known = client.request("GET", f"/api/v1/devices/{device}", allow_missing=True)
        if known.status_code == 404:
            raise UserError(
                f"no device {device!r} has ever connected to this controller or been enrolled "
                "with `camfleet device add` (`camfleet devices` lists the fleet); pass "
                "--allow-unknown to queue it anyway"
            )
    body = {
        "action": "capture",
        "device": device,
        "group": group,
        "params": {"count": count, "interval_ms": interval_ms},
        "expires_in_s": expires_in_s,
    }
    data = client.json("POST", "/api/v1/commands", json=body)
    cols = [
        ("COMMAND", "id"),
        ("DEVICE", "device_id"),
        ("STATUS", "status"),
        ("EXPIRES", "expires_ms"),
    ]
    emit(data["items"], as_json, lambda items: table(items, cols))


# --- config -----------------------------------------------------------------------------------


@click.group()
def config() -> None:
    """Get or set a device's (or group's) desired config."""


@config.command("get")
@click.argument("device", required=False)
@click.option("--group", help="Show a group's defaults instead.")
@api_options
def config_get(
    device: str | None, group: str | None, api: str, token: str | None, as_json: bool
) -> None:
    """Show the desired config, its version, the reported version and drift."""
    if (device is None) == (group is None):
        raise UserError("give a DEVICE or --group GROUP (exactly one)")
    path = f"/api/v1/groups/{group}/config" if group else f"/api/v1/devices/{device}/config"
    data = Api(api, token).json("GET", path)

    def render(d: dict[str, Any]) -> str:
        if group:
            return json.dumps(d["config"], indent=2, sort_keys=True)
        head = (
            f"desired version {d['version']}, reported {d['reported_version']}"
            f"{' (DRIFT)' if d['drift'] else ''}"
        )
        if d.get("reported_error"):
            head += f"\nreported error: {d['reported_error']}"
        return head + "\n" + json.dumps(d["desired"], indent=2, sort_keys=True)

    emit(data, as_json, render)


def parse_assignments(pairs: Sequence[str]) -> dict[str, Any]:
    """``camera.jpeg_quality=80 schedule.interval_s=600`` -> nested dict (values as JSON)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"expected KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"{key!r} conflicts with another assignment")
        node[parts[-1]] = value
    return out


@config.command("set")
@click.argument("device", required=False)
@click.argument("assignments", nargs=-1)
@click.option("--group", help="Set a group's defaults instead (then give no DEVICE).")
@click.option("--file", "file", type=click.Path(path_type=Path), help="A JSON DeviceConfig.")
@click.option("--replace", is_flag=True, help="Replace the layer instead of merging into it.")
@api_options
def config_set(
    device: str | None,
    assignments: tuple[str, ...],
    group: str | None,
    file: Path | None,
    replace: bool,
    api: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Change desired config: KEY=VALUE pairs (e.g. camera.jpeg_quality=80) or --file."""
    if group and device and "=" in device:
        assignments, device = (device, *assignments), None
    if (device is None) == (group is None):
        raise UserError("give a DEVICE or --group GROUP (exactly one)")
    cfg: dict[str, Any] = {}
    if file is not None:
        try:
            cfg = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {file}: {exc}") from None
    cfg.update(parse_assignments(assignments))
    if not cfg:
        raise UserError("nothing to set: give KEY=VALUE pairs or --file")
    path = f"/api/v1/groups/{group}/config" if group else f"/api/v1/devices/{device}/config"
    data = Api(api, token).json("PUT", path, json={"config": cfg, "replace": replace})
    emit(
        data,
        as_json,
        lambda d: (
            f"{group or device}: desired version {d.get('version', '-')}"
            if not group
            else f"group {group} defaults updated"
        ),
    )


# --- schedule ---------------------------------------------------------------------------------


@click.group()
def schedule() -> None:
    """Manage capture schedules (cron, interval, one-shot)."""


_SCHEDULE_COLS = [
    ("ID", "id"),
    ("TARGET", "target_kind"),
    ("NAME", "target"),
    ("KIND", "kind"),
    ("SPEC", "spec"),
    ("COUNT", "capture_count"),
    ("ENABLED", "enabled"),
    ("NEXT", "next_slot_ms"),
    ("FIRED", "fired"),
    ("MISSED", "missed"),
]


@schedule.command("add")
@click.option("--device", help="Target one device.")
@click.option("--group", help="Target a group.")
@click.option("--all", "all_", is_flag=True, help="Target the whole fleet.")
@click.option("--cron", help="5-field cron expression, UTC, e.g. '0 */2 * * *'.")
@click.option("--every", type=float, help="Interval in seconds.")
@click.option("--at", help="One shot at this time (ISO 8601, UTC by default).")
@click.option("--count", default=1, show_default=True, help="Frames per slot.")
@api_options
def schedule_add(
    device: str | None,
    group: str | None,
    all_: bool,
    cron: str | None,
    every: float | None,
    at: str | None,
    count: int,
    api: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Add a schedule for a device, a group or all (sleeping nodes get it compiled into config)."""
    targets = [(k, v) for k, v in (("device", device), ("group", group)) if v] + (
        [("all", "")] if all_ else []
    )
    kinds = [(k, v) for k, v in (("cron", cron), ("interval", every), ("once", at)) if v]
    if len(targets) != 1:
        raise UserError("give exactly one of --device, --group, --all")
    if len(kinds) != 1:
        raise UserError("give exactly one of --cron, --every, --at")
    (target_kind, target), (kind, spec) = targets[0], kinds[0]
    body = {
        "target_kind": target_kind,
        "target": target,
        "kind": kind,
        "spec": str(spec),
        "capture_count": count,
    }
    data = Api(api, token).json("POST", "/api/v1/schedules", json=body)
    emit(data, as_json, lambda d: table([d], _SCHEDULE_COLS))


@schedule.command("ls")
@api_options
def schedule_ls(api: str, token: str | None, as_json: bool) -> None:
    """List schedules with their next slot and fired/missed counts."""
    data = Api(api, token).json("GET", "/api/v1/schedules")
    emit(
        data["items"],
        as_json,
        lambda items: table(items, _SCHEDULE_COLS) if items else "no schedules",
    )


@schedule.command("rm")
@click.argument("schedule_id")
@api_options
def schedule_rm(schedule_id: str, api: str, token: str | None, as_json: bool) -> None:
    """Delete a schedule."""
    Api(api, token).request("DELETE", f"/api/v1/schedules/{schedule_id}")
    emit({"deleted": schedule_id}, as_json, lambda d: f"deleted {schedule_id}")


# --- frames -----------------------------------------------------------------------------------


@click.group()
def frames() -> None:
    """List and download stored frames."""


@frames.command("ls")
@click.option("--device", help="Only this device.")
@click.option("--limit", default=20, show_default=True)
@click.option("--command", "command_id", help="Only frames captured for this command.")
@api_options
def frames_ls(
    device: str | None,
    limit: int,
    command_id: str | None,
    api: str,
    token: str | None,
    as_json: bool,
) -> None:
    """List stored frames, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if device:
        params["device"] = device
    if command_id:
        params["command_id"] = command_id
    data = Api(api, token).json("GET", "/api/v1/frames", params=params)
    cols = [
        ("DEVICE", "device_id"),
        ("FRAME", "id"),
        ("CAPTURED", "captured_at_ms"),
        ("SIZE", "size"),
        ("HISTORICAL", "historical"),
        ("PATH", "store_key"),
    ]
    emit(data["items"], as_json, lambda items: table(items, cols) if items else "no frames")


@frames.command("timelapse")
@click.argument("device")
@click.option("--from", "start", required=True, help="Start (ISO 8601, UTC by default).")
@click.option("--to", "end", required=True, help="End, exclusive (ISO 8601, UTC by default).")
@click.option("--fps", default=12.0, show_default=True, help="Frames per second of the result.")
@click.option("--width", default=1280, show_default=True, help="Largest width (scaled down).")
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="out.mp4 or out.gif"
)
@api_options
def frames_timelapse(
    device: str,
    start: str,
    end: str,
    fps: float,
    width: int,
    output: Path,
    api: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Make a timelapse of DEVICE's frames from --from to --to: GIF (Pillow) or MP4 (ffmpeg)."""
    from camfleet import timelapse

    since, until = timelapse.parse_time(start, "--from"), timelapse.parse_time(end, "--to")
    if until <= since:
        raise UserError(f"--to {end} is not after --from {start}")
    client = Api(api, token)

    def list_frames() -> list[tuple[str, int]]:
        page = client.json(
            "GET", f"/api/v1/gallery/{device}", params={"since_ms": since, "until_ms": until}
        )
        return [(i, t) for i, t in reversed(page["items"])]

    def fetch(frame_id: str) -> bytes:
        return client.request("GET", f"/api/v1/frames/{device}/{frame_id}/image").content

    timelapse.check_output(output, fps)
    ids = list_frames()
    describe = f"of {device} from {start} to {end} (UTC unless given)"
    if not ids:
        raise UserError(f"no frames {describe}: nothing to make a timelapse of")
    with click.progressbar(length=len(ids), label="timelapse", file=sys.stderr) as bar:
        count = timelapse.make(ids, fetch, output, fps, width, describe, bar.update)
    emit(
        {"device": device, "frames": count, "fps": fps, "output": str(output)},
        as_json,
        lambda d: f"{d['output']}: {d['frames']} frames of {d['device']} at {d['fps']:g} fps",
    )


@frames.command("get")
@click.argument("device")
@click.argument("frame_id", default="latest")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="File (default: FRAME.jpg; - = stdout)."
)
@api_options
def frames_get(
    device: str, frame_id: str, output: Path | None, api: str, token: str | None, as_json: bool
) -> None:
    """Download frame FRAME_ID (SESSION-SEQ, default: latest) of DEVICE."""
    client = Api(api, token)
    meta = client.json("GET", f"/api/v1/frames/{device}/{frame_id}")
    data = client.request("GET", f"/api/v1/frames/{device}/{frame_id}/image").content
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(data)
        return
    target = output or Path(f"{device}_{meta['id']}.jpg")
    target.write_bytes(data)
    emit(
        {**meta, "saved_to": str(target)}, as_json, lambda d: f"saved {len(data)} bytes to {target}"
    )
