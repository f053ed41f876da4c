"""Shared pieces of the API routes: the controller, the token check, error mapping.

Authentication lives here and only here: ``WRITE`` (the dependency plus its documented
refusals) is what every write route declares, so a change to who may write (users, roles) is
one edit in this file and the OpenAPI document follows it.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

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
    description="The controller's API token, sent as `Authorization: Bearer <token>`. It is in "
    "DATA/api-token; `camfleet controller run` also saves it for its user in "
    "~/.config/camfleet/tokens/HOST-PORT, where the `camfleet` client commands find it.",
    auto_error=False,
)


def ctl(request: Request) -> Controller:
    return request.app.state.controller  # type: ignore[no-any-return]


def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> None:
    """Write endpoints: ``Authorization: Bearer <token>``."""
    given = credentials.credentials.strip() if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), ctl(request).token.encode()):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def not_found(what: str) -> dict[int | str, dict[str, Any]]:
    """The documented 404 of a route that names a resource in its path."""
    return {404: {"model": ErrorBody, "description": f"No such {what}."}}


#: The 404 of routes that answer for any well-formed device id (known or not yet).
BAD_DEVICE_ID: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not a device id (1-64 of a-z 0-9 _ -)."}
}


#: Keyword arguments of every write route: the token check and its documented refusal.
WRITE: dict[str, Any] = {
    "dependencies": [Security(require_token)],
    "responses": {
        401: {"model": ErrorBody, "description": "No bearer token, or not the controller's."}
    },
}


def write(*more: dict[int | str, dict[str, Any]]) -> dict[str, Any]:
    """``WRITE`` plus more documented responses (e.g. ``not_found("device")``)."""
    responses = dict(WRITE["responses"])
    for extra in more:
        responses.update(extra)
    return {**WRITE, "responses": responses}


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
