"""Shared pieces of the API routes: the controller, the token check, error mapping.

Authentication lives here and only here: ``WRITE`` / ``write()`` (operator) and ``ADMIN`` /
``admin()`` (the role check plus its documented refusals and the role as ``x-camfleet-role``)
are what every write route declares, so the OpenAPI document says who may call what, and the
test walking that document (tests/controller/test_api_auth.py) checks each route keeps to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from camfleet.controller.users import User
from camfleet.proto.errors import ContractError
from camfleet.proto.topics import is_valid_device_id, validate_group

if TYPE_CHECKING:
    from camfleet.controller.service import Controller


class ErrorBody(BaseModel):
    """What every refusal answers: ``{"detail": "why, in words"}``."""

    detail: str


# components.securitySchemes.bearerAuth: Swagger's "Authorize" and generated clients send it.
bearer = HTTPBearer(
    scheme_name="bearerAuth",
    description="A user's API token, sent as `Authorization: Bearer <token>`: the controller's "
    "own (the built-in local admin) is in DATA/api-token; `camfleet controller run` also saves "
    "it for its user in ~/.config/camfleet/tokens/HOST-PORT, where the `camfleet` client "
    "commands find it. `camfleet users add` issues tokens of other users (viewer, operator, "
    "admin); each route's role is its `x-camfleet-role`.",
    auto_error=False,
)


def ctl(request: Request) -> Controller:
    return request.app.state.controller  # type: ignore[no-any-return]


Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def authenticate(request: Request, credentials: Credentials) -> User:
    """The user whose token the bearer credentials carry; 401 otherwise."""
    given = credentials.credentials.strip() if credentials is not None else ""
    user = ctl(request).users.authenticate(given)
    if user is None:
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


def require_role(role: str) -> Callable[..., User]:
    """A dependency admitting users of ``role`` or above (401 without a known token, 403 for a
    lower role)."""

    def check(request: Request, credentials: Credentials) -> User:
        user = authenticate(request, credentials)
        if not user.may(role):
            raise HTTPException(403, f"user {user.name!r} is a {user.role}; this needs {role}")
        return user

    return check


#: Writes that change what the fleet does (commands, config, schedules, groups and tags).
require_token = require_role("operator")
require_admin = require_role("admin")


def not_found(what: str) -> dict[int | str, dict[str, Any]]:
    """The documented 404 of a route that names a resource in its path."""
    return {404: {"model": ErrorBody, "description": f"No such {what}."}}


#: The 404 of routes that answer for any well-formed device id (known or not yet).
BAD_DEVICE_ID: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not a device id (1-64 of a-z 0-9 _ -)."}
}


def needs(
    check: Callable[..., User], role: str, *more: dict[int | str, dict[str, Any]]
) -> dict[str, Any]:
    """Route keyword arguments: the role check, its documented refusals (plus ``more``), and
    the role named in the OpenAPI document (``x-camfleet-role``)."""
    responses: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody, "description": "No bearer token, or one no user has."},
        403: {"model": ErrorBody, "description": f"The user's role is below {role}."},
    }
    for extra in more:
        responses.update(extra)
    return {
        "dependencies": [Security(check)],
        "responses": responses,
        "openapi_extra": {"x-camfleet-role": role},
    }


def write(*more: dict[int | str, dict[str, Any]]) -> dict[str, Any]:
    """An operator's write, plus more documented responses (e.g. ``not_found("device")``)."""
    return needs(require_token, "operator", *more)


def admin(*more: dict[int | str, dict[str, Any]]) -> dict[str, Any]:
    """An admin's route (users, OTA), plus more documented responses."""
    return needs(require_admin, "admin", *more)


#: Keyword arguments of every operator write route.
WRITE = write()
ADMIN = admin()


#: The 404 of group routes: a group is any well-formed name (it exists once it has members).
BAD_GROUP: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not a group name (1-64 of a-z 0-9 _ -)."}
}


def group_or_404(group: str) -> str:
    try:
        return validate_group(group)
    except ValueError:
        raise HTTPException(404, f"no group {group!r}") from None


def device_id_or_404(device_id: str) -> str:
    if not is_valid_device_id(device_id):
        raise HTTPException(404, f"no device {device_id!r}")
    return device_id


def bad_request(exc: Exception) -> HTTPException:
    detail = exc.detail if isinstance(exc, ContractError) else str(exc)
    return HTTPException(422, detail)


def page(items: list[Any], **extra: Any) -> dict[str, Any]:
    return {"items": items, "count": len(items), **extra}
