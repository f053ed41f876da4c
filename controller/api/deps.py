"""Shared pieces of the API routes: the controller, the token check, error mapping."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from fastapi import Header, HTTPException, Request

from camfleet.proto.errors import ContractError
from camfleet.proto.topics import is_valid_device_id

if TYPE_CHECKING:
    from camfleet.controller.service import Controller


def ctl(request: Request) -> Controller:
    return request.app.state.controller  # type: ignore[no-any-return]


def require_token(request: Request, authorization: str = Header(default="")) -> None:
    """Write endpoints: ``Authorization: Bearer <token>``."""
    expected = ctl(request).token
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), expected):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def device_id_or_404(device_id: str) -> str:
    if not is_valid_device_id(device_id):
        raise HTTPException(404, f"no device {device_id!r}")
    return device_id


def bad_request(exc: Exception) -> HTTPException:
    detail = exc.detail if isinstance(exc, ContractError) else str(exc)
    return HTTPException(422, detail)


def page(items: list[Any], **extra: Any) -> dict[str, Any]:
    return {"items": items, "count": len(items), **extra}
