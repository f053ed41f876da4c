"""API users: list, add (the token is in the answer, once), remove. Admin only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from camfleet.controller.api.deps import ADMIN, admin, bad_request, ctl, not_found, page
from camfleet.controller.users import ROLES
from camfleet.errors import UserError

router = APIRouter(prefix="/api/v1", tags=["users"])


class NewUser(BaseModel):
    name: str = Field(description="1-64 of a-z 0-9 _ . -")
    role: str = Field(description=f"one of {', '.join(ROLES)}")


@router.get("/users", **ADMIN)
def list_users(request: Request) -> Any:
    return page(ctl(request).users.list())


@router.post("/users", status_code=201, **ADMIN)
def add_user(request: Request, body: NewUser) -> Any:
    """The answer carries the new user's token: it is stored hashed and never shown again."""
    try:
        token = ctl(request).users.add(body.name, body.role)
    except UserError as exc:
        raise bad_request(exc) from None
    return {"name": body.name, "role": body.role, "token": token}


@router.delete("/users/{name}", status_code=204, **admin(not_found("user")))
def remove_user(request: Request, name: str) -> None:
    if not ctl(request).users.remove(name):
        raise HTTPException(404, f"no user {name!r}")
