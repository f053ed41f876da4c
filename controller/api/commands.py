"""Commands: create (device or group), list, status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Security
from pydantic import BaseModel, Field

from camfleet.controller.api.deps import WRITE, bad_request, ctl, not_found, page, require_token
from camfleet.controller.users import User
from camfleet.errors import UserError
from camfleet.proto.errors import ContractError

router = APIRouter(prefix="/api/v1", tags=["commands"])


class CommandBody(BaseModel):
    action: str = Field(
        description="capture, set_config, reboot, stay_awake or reannounce (operator); "
        "ota_offer (admin)"
    )
    device: str | None = None
    group: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="The action's fields")
    expires_in_s: float | None = Field(
        default=None, description="seconds, > 0; omitted = command_expiry_s"
    )


@router.post("/commands", status_code=201, **WRITE)
def create_command(
    request: Request, body: CommandBody, user: Annotated[User, Security(require_token)]
) -> Any:
    """One command per target device; each waits in its device's session if it sleeps."""
    if body.action == "ota_offer" and not user.may("admin"):
        raise HTTPException(403, f"user {user.name!r} is a {user.role}; OTA offers need admin")
    try:
        items = ctl(request).commands.create(
            body.action, body.params, body.device, body.group, body.expires_in_s
        )
    except (UserError, ContractError) as exc:
        raise bad_request(exc) from None
    return page(items)


@router.get("/commands")
def list_commands(
    request: Request, device: str | None = None, status: str | None = None, limit: int = 100
) -> Any:
    c = ctl(request)
    with c.db.read() as tx:
        rows = c.commands.list_rows(tx, device, status, min(max(limit, 1), 10_000))
    return page([c.commands.to_json(r) for r in rows])


@router.get("/commands/{command_id}", responses=not_found("command"))
def get_command(request: Request, command_id: str) -> Any:
    c = ctl(request)
    with c.db.read() as tx:
        row = c.commands.get_row(tx, command_id)
    if row is None:
        raise HTTPException(404, f"no command {command_id!r}")
    return c.commands.to_json(row)
