"""The one ``camfleet`` command.

Sub-commands live next to the code they drive (controller/cli.py, edge/cli.py, ...). They are
imported only when used, so ``camfleet --help`` stays fast and a plain install without hardware
extras never imports a camera library.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from camfleet import __version__
from camfleet.errors import UserError

# name -> (module, attribute, one-line help). The module must define a click command or group.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "camfleet.demo",
        "demo",
        "Run broker + controller + simulated cameras on this machine.",
    ),
    "controller": ("camfleet.controller.cli", "controller", "Run the controller service."),
    "devices": ("camfleet.api_client", "devices", "List the fleet's devices."),
    "capture": ("camfleet.api_client", "capture", "Ask a device or group to capture."),
    "config": ("camfleet.api_client", "config", "Get or set a device's desired config."),
    "schedule": ("camfleet.api_client", "schedule", "Manage capture schedules."),
    "frames": ("camfleet.api_client", "frames", "List and download stored frames."),
    "ota": ("camfleet.controller.ota.cli", "ota", "Firmware artifacts and staged rollouts."),
    "edge": ("camfleet.edge.cli", "edge", "Run the Linux edge agent."),
    "sim": ("camfleet.esp32_node.tools.cli", "sim", "Run simulated devices against a broker."),
    "broker": ("camfleet.broker_cli", "broker", "Run a local mosquitto with camfleet's config."),
    "device": ("camfleet.device_cli", "device", "Enrol and revoke devices (prod broker)."),
    "users": ("camfleet.users_cli", "users", "Manage the controller API's users and roles."),
    "provision": ("camfleet.provision_cli", "provision", "Enrol and flash an ESP32 over USB."),
    "proto": ("camfleet.proto.cli", "proto", "Decode and inspect camfleet MQTT payloads."),
}


class LazyGroup(click.Group):
    """A click group that imports a sub-command's module only when that sub-command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = SUBCOMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, help_text = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                return _unavailable(cmd_name, help_text, f"{module_name} is not built yet")
            return _unavailable(cmd_name, help_text, f"missing dependency {exc.name!r}")
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing help must not import every sub-command's module: use the static help texts.
        rows = [(name, SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"camfleet: error: {exc}", err=True)
            sys.exit(exc.exit_code)


def _unavailable(name: str, help_text: str, why: str) -> click.Command:
    @click.command(
        name=name,
        help=f"{help_text} (unavailable: {why})",
        context_settings={"ignore_unknown_options": True},
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise UserError(f"'camfleet {name}' is unavailable: {why}")

    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="camfleet")
def cli() -> None:
    """camfleet: run and manage a camera fleet over MQTT.

    Start with `camfleet demo` (a broker, a controller and simulated cameras on this machine),
    then `camfleet devices` and `camfleet frames ls` against it.
    """


def main() -> None:
    cli(prog_name="camfleet")
