"""``camfleet device add/rm``: enrol and revoke devices on a prod broker (camfleet.enrol)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from camfleet.api_client import Api, api_options
from camfleet.broker_config.profiles import BrokerDir
from camfleet.controller.device_keys import registry_keys
from camfleet.enrol import BOARDS, add_device, remove_device
from camfleet.rotate import finish_rotation, rotate_device

broker_option = click.option(
    "--broker-config",
    "broker_config",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CAMFLEET_BROKER_CONFIG",
    default=Path("camfleet-broker"),
    show_default=True,
    help="The `camfleet broker init` directory [env CAMFLEET_BROKER_CONFIG].",
)
data_option = click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CAMFLEET_DATA",
    default=Path("camfleet-data"),
    show_default=True,
    help="The controller's data directory (its registry keeps the device keys) "
    "[env CAMFLEET_DATA].",
)
database_option = click.option(
    "--database",
    envvar="CAMFLEET_DATABASE",
    default="",
    help="The controller's registry URL when it is not the SQLite file in --data "
    "(e.g. postgresql://...) [env CAMFLEET_DATABASE].",
)


@click.group()
def device() -> None:
    """Enrol (add), revoke (rm) and rotate the credentials of devices: broker identity, secret
    key, registry entry, device config."""


@device.command()
@click.argument("device_id")
@click.option("--group", "groups", multiple=True, help="Group whose commands it follows.")
@click.option(
    "--board", type=click.Choice(list(BOARDS)), default="usb", show_default=True, help="Hardware."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("camfleet-devices"),
    show_default=True,
    help="Where the device's configuration is written (OUT/ID/, mode 0700).",
)
@click.option("--broker-host", default=None, help="Broker name or address the device connects to.")
@click.option("--wifi-ssid", default="", help="ESP32: Wi-Fi network.")
@click.option("--wifi-pass", envvar="CAMFLEET_WIFI_PASS", default="", help="ESP32: Wi-Fi password.")
@click.option(
    "--cert",
    is_flag=True,
    help="Identity = a client certificate from the broker's CA (Linux boards; the broker's "
    "certificate listener) instead of a password.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (no secrets) instead of text.")
@broker_option
@data_option
@database_option
def add(
    device_id: str,
    groups: tuple[str, ...],
    board: str,
    out: Path,
    broker_host: str | None,
    wifi_ssid: str,
    wifi_pass: str,
    cert: bool,
    as_json: bool,
    broker_config: Path,
    data: Path,
    database: str,
) -> None:
    """Enrol DEVICE_ID: its broker identity and role (live, no restart), its secret key and its
    row in the controller's registry (listed by `camfleet devices` as `enrolled` until it first
    connects; written directly, so the controller need not run), and its configuration in
    OUT/DEVICE_ID/. Adding it again replaces its credentials and key (the old ones stop
    working)."""
    broker = BrokerDir.open(broker_config)
    with registry_keys(data, database) as keys:
        e = add_device(
            broker, keys, device_id, groups, board, out, broker_host, (wifi_ssid, wifi_pass), cert
        )
    if as_json:
        click.echo(json.dumps(e.as_json(), indent=2, sort_keys=True))
        return
    how = "client certificate" if e.password is None else "password"
    click.echo(
        f"enrolled {e.device_id} ({e.board}): broker identity {e.username} ({how}), key and "
        "registry entry (state enrolled) in the controller's registry"
    )
    for f in e.files:
        click.echo(f"  {f}")


@device.command()
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@broker_option
@data_option
@database_option
def rm(device_id: str, as_json: bool, broker_config: Path, data: Path, database: str) -> None:
    """Revoke DEVICE_ID: its identities are deleted and its connection dropped at once; its key
    is deleted. Its registry row and frames stay."""
    broker = BrokerDir.open(broker_config)
    with registry_keys(data, database) as keys:
        known = remove_device(broker, keys, device_id)
    if as_json:
        click.echo(json.dumps({"device_id": device_id, "revoked": known}, sort_keys=True))
    elif known:
        click.echo(f"revoked {device_id}: identity deleted, connection dropped, key deleted")
    else:
        click.echo(f"{device_id} had no broker identity; its key (if any) is deleted")


@device.command()
@click.argument("device_id")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the device to report the new identity in use before the old one "
    "is deleted; after that both keep working (finish later with --finish).",
)
@click.option(
    "--finish",
    is_flag=True,
    help="Complete an earlier rotation: keep only the identity the device reports in use.",
)
@api_options
@broker_option
def rotate(
    device_id: str,
    wait_s: float,
    finish: bool,
    api: str,
    token: str | None,
    as_json: bool,
    broker_config: Path,
) -> None:
    """New broker credentials for DEVICE_ID, delivered in its desired config (encrypted with
    its key) while the old ones still work; the old identity is deleted once the device reports
    the new one in use. Needs the controller running (it delivers them). For devices that
    announce the capability `credentials` (edge agents and ESP32 nodes with a key); a
    certificate identity is enrolled again instead. A sleeping node switches at its next wake."""
    broker = BrokerDir.open(broker_config)
    if finish:
        r = finish_rotation(broker, device_id, wait_s)
    else:
        r = rotate_device(broker, Api(api, token), device_id, wait_s)
    if as_json:
        click.echo(json.dumps(r.as_json(), indent=2, sort_keys=True))
    elif r.status == "done":
        retired = ", ".join(r.retired) or "none"
        click.echo(f"rotated {device_id}: it uses identity {r.identity}; deleted: {retired}")
    elif finish:
        click.echo(
            f"{device_id} reported none of its identities within {wait_s:g} s: nothing deleted"
        )
    else:
        click.echo(
            f"{device_id}: new identity {r.identity} delivered; the device has not reported it "
            f"in use within {wait_s:g} s, so both identities work. Once it has: "
            f"camfleet device rotate {device_id} --finish"
        )
