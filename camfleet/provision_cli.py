"""``camfleet provision esp32``: enrol a node and flash it over USB with esptool.

Order matters, so a failure leaves nothing half done that matters: the firmware is checked
first (esptool's image classes), then the port is opened (a missing or busy port stops here,
before anything is enrolled), then the device is enrolled (broker identity, key, NVS image;
camfleet.enrol), then firmware, partition table, otadata and NVS are written with
``esptool write-flash`` and checked with ``esptool verify-flash``. Re-running it replaces the
enrolment (new password and key), so a flash that failed half way is simply run again.

The firmware freezes the node's modules (esp32_node/firmware/manifest.py), so no app files are
copied; without --firmware only the NVS partition is written (re-enrolling a flashed node).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from camfleet.broker_config.profiles import BrokerDir
from camfleet.controller.device_keys import registry_keys
from camfleet.device_cli import broker_option, data_option, database_option
from camfleet.enrol import BOARDS, add_device, checked_device_id, is_esp32
from camfleet.errors import UserError


@click.group()
def provision() -> None:
    """Enrol and flash devices over USB."""


def esptool(port: str, *args: str) -> None:
    """Run esptool in this process (its progress goes to stdout); one line on failure."""
    import esptool as tool

    try:
        tool.main(["--chip", "esp32", "--port", port, *args])
    except tool.FatalError as exc:
        first = str(exc).strip().splitlines()[0]
        if "port is busy or doesn't exist" in first:
            raise UserError(f"cannot open {port}: the port is busy or does not exist") from None
        raise UserError(f"esptool {args[0]} on {port} failed: {first}") from None
    except SystemExit as exc:  # esptool's argument errors
        if exc.code:
            raise UserError(
                f"esptool {args[0]} on {port} failed (exit status {exc.code})"
            ) from None


def check_firmware(path: Path, ota_size: int) -> bytes:
    from camfleet.esp32_node.tools.images import read_image

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read firmware {path}: {exc.strerror or exc}") from None
    try:
        info = read_image(data)
    except Exception as exc:  # esptool raises several kinds on a file that is not an image
        raise UserError(f"{path} is not an ESP32 app image: {exc}") from None
    if info.chip_id != 0:
        raise UserError(f"{path} is built for chip id {info.chip_id}, not the ESP32 (0)")
    if not info.checksum_ok or not info.digest_ok:
        raise UserError(f"{path} is damaged: its checksum or SHA-256 does not match")
    if len(data) > ota_size:
        raise UserError(f"{path} has {len(data)} bytes; an app slot holds {ota_size}")
    return data


@provision.command()
@click.option("--port", required=True, help="Serial port, e.g. /dev/ttyUSB0 or socket://HOST:PORT.")
@click.option("--device-id", required=True, help="The node's id (its broker identity).")
@click.option(
    "--firmware",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="App image to flash into ota_0 (checked first); without it only NVS is written.",
)
@click.option(
    "--board",
    type=click.Choice([b for b in BOARDS if is_esp32(b)]),
    default="esp32-cam",
    show_default=True,
)
@click.option("--group", "groups", multiple=True, help="Group whose commands it follows.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("camfleet-devices"),
    show_default=True,
    help="Where the node's files are kept (OUT/ID/, mode 0700).",
)
@click.option("--broker-host", default=None, help="Broker name or address the node connects to.")
@click.option("--wifi-ssid", default="", help="Wi-Fi network.")
@click.option("--wifi-pass", envvar="CAMFLEET_WIFI_PASS", default="", help="Wi-Fi password.")
@broker_option
@data_option
@database_option
def esp32(
    port: str,
    device_id: str,
    firmware: Path | None,
    board: str,
    groups: tuple[str, ...],
    out: Path,
    broker_host: str | None,
    wifi_ssid: str,
    wifi_pass: str,
    broker_config: Path,
    data: Path,
    database: str,
) -> None:
    """Enrol DEVICE_ID and flash it: firmware, partition table, otadata, NVS; then verify."""
    from camfleet.esp32_node.tools import partitions

    checked_device_id(device_id)
    broker = BrokerDir.open(broker_config)
    table = resources.files("camfleet.esp32_node").joinpath("firmware/partitions.csv")
    parts = partitions.parse_csv(table.read_text())
    by_name = {p.name: p for p in parts}
    app = check_firmware(firmware, by_name["ota_0"].size) if firmware is not None else None

    click.echo(f"[1/4] checking {port}")
    esptool(port, "chip-id")
    click.echo(f"[2/4] enrolling {device_id}")
    with registry_keys(data, database) as keys:
        enrolment = add_device(
            broker, keys, device_id, groups, board, out, broker_host, (wifi_ssid, wifi_pass)
        )
    folder = out / enrolment.device_id
    writes = [(by_name["nvs"].offset, folder / "nvs.bin")]
    if app is not None:
        (folder / "partitions.bin").write_bytes(partitions.to_binary(parts))
        # Blank otadata: the bootloader starts ota_0, the slot the firmware goes to.
        (folder / "otadata.bin").write_bytes(b"\xff" * by_name["otadata"].size)
        (folder / "app.bin").write_bytes(app)
        writes += [
            (partitions.TABLE_OFFSET, folder / "partitions.bin"),
            (by_name["otadata"].offset, folder / "otadata.bin"),
            (by_name["ota_0"].offset, folder / "app.bin"),
        ]
    args = [a for offset, path in sorted(writes) for a in (hex(offset), str(path))]
    click.echo(f"[3/4] writing {', '.join(p.name for _, p in sorted(writes))}")
    esptool(port, "write-flash", *args)
    click.echo("[4/4] verifying")
    esptool(port, "verify-flash", *args)
    click.echo(f"provisioned {device_id}: flashed and verified; its files are in {folder}")
