"""``camfleet users add/ls/rm``: the controller API's named users (admin only).

Run on the controller's machine, the local admin token (DATA/api-token) is enough: pass it with
--token or CAMFLEET_TOKEN.
"""

from __future__ import annotations

from typing import Any

import click

from camfleet.api_client import Api, api_options, emit, table
from camfleet.controller.users import ROLES


@click.group()
def users() -> None:
    """Named API users with roles: viewer (read), operator (commands, config, schedules),
    admin (OTA, users)."""


@users.command()
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@api_options
def add(name: str, role: str, api: str, token: str | None, as_json: bool) -> None:
    """Add a user; its token is printed once (only its hash is kept)."""
    data = Api(api, token).json("POST", "/api/v1/users", json={"name": name, "role": role})
    emit(
        data,
        as_json,
        lambda d: f"added {d['name']} ({d['role']}); token (shown once): {d['token']}",
    )


@users.command(name="ls")
@api_options
def list_users(api: str, token: str | None, as_json: bool) -> None:
    """List users (the built-in local admin is not listed)."""
    data = Api(api, token).json("GET", "/api/v1/users")

    def render(d: Any) -> str:
        return table(d["items"], [("NAME", "name"), ("ROLE", "role"), ("CREATED", "created_ms")])

    emit(data, as_json, render)


@users.command()
@click.argument("name")
@api_options
def rm(name: str, api: str, token: str | None, as_json: bool) -> None:
    """Remove a user: its token stops working at once."""
    Api(api, token).request("DELETE", f"/api/v1/users/{name}")
    emit({"removed": name}, as_json, lambda d: f"removed {d['removed']}")
