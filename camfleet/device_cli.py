"""``camfleet device add/rm``: enrol and revoke devices on a prod broker (camfleet.enrol)."""

from __future__ import annotations

from pathlib import Path

import click

from camfleet.broker_config.profiles import BrokerDir
from camfleet.enrol import BOARDS, add_device, remove_device

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
    help="The controller's data directory (device keys live there) [env CAMFLEET_DATA].",
)


@click.group()
def device() -> None:
    """Enrol (add) and revoke (rm) devices: broker identity, secret key, device config."""


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
@broker_option
@data_option
def add(
    device_id: str,
    groups: tuple[str, ...],
    board: str,
    out: Path,
    broker_host: str | None,
    wifi_ssid: str,
    wifi_pass: str,
    broker_config: Path,
    data: Path,
) -> None:
    """Enrol DEVICE_ID (again: new password and key, the old ones stop working)."""
    e = add_device(
        BrokerDir.open(broker_config),
        data,
        device_id,
        groups,
        board,
        out,
        broker_host,
        (wifi_ssid, wifi_pass),
    )
    click.echo(f"enrolled {e.device_id} ({e.board}): broker identity, key in {data}/device-keys")
    for f in e.files:
        click.echo(f"  {f}")


@device.command()
@click.argument("device_id")
@broker_option
@data_option
def rm(device_id: str, broker_config: Path, data: Path) -> None:
    """Revoke DEVICE_ID: its identity is deleted and its connection dropped at once."""
    if remove_device(BrokerDir.open(broker_config), data, device_id):
        click.echo(f"revoked {device_id}: identity deleted, connection dropped, key deleted")
    else:
        click.echo(f"{device_id} had no broker identity; its key (if any) is deleted")
