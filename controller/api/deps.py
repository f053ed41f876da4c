"""Shared pieces of the API routes: the controller, the token check, error mapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Header, HTTPException, Request

from camfleet.controller.users import User
from camfleet.proto.errors import ContractError
from camfleet.proto.topics import is_valid_device_id

if TYPE_CHECKING:
    from camfleet.controller.service import Controller


def ctl(request: Request) -> Controller:
    return request.app.state.controller  # type: ignore[no-any-return]


def authenticate(request: Request, authorization: str) -> User:
    """The user whose token ``Authorization: Bearer <token>`` carries; 401 otherwise."""
    scheme, _, given = authorization.partition(" ")
    user = ctl(request).users.authenticate(given.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


def require_role(role: str) -> Callable[..., User]:
    """A dependency admitting users of ``role`` or above (401 without a known token, 403 for a
    lower role)."""

    def check(request: Request, authorization: str = Header(default="")) -> User:
        user = authenticate(request, authorization)
        if not user.may(role):
            raise HTTPException(403, f"user {user.name!r} is a {user.role}; this needs {role}")
        return user

    return check


def needs(role: str) -> dict[str, Any]:
    """Route keyword arguments: the role check, and the role named in the OpenAPI document
    (``x-camfleet-role``), where the test walking every route finds it."""
    return {
        "dependencies": [Depends(require_role(role))],
        "openapi_extra": {"x-camfleet-role": role},
    }


#: Writes that change what the fleet does (commands, config, schedules, groups and tags).
require_token = require_role("operator")
OPERATOR = needs("operator")
ADMIN = needs("admin")


def device_id_or_404(device_id: str) -> str:
    if not is_valid_device_id(device_id):
        raise HTTPException(404, f"no device {device_id!r}")
    return device_id


def bad_request(exc: Exception) -> HTTPException:
    detail = exc.detail if isinstance(exc, ContractError) else str(exc)
    return HTTPException(422, detail)


def page(items: list[Any], **extra: Any) -> dict[str, Any]:
    return {"items": items, "count": len(items), **extra}
