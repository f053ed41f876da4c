"""Devices: list, detail, groups/tags, telemetry, events, desired config."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from camfleet.controller import registry
from camfleet.controller.api.deps import (
    BAD_DEVICE_ID,
    BAD_GROUP,
    ErrorBody,
    admin,
    bad_request,
    ctl,
    device_id_or_404,
    group_or_404,
    not_found,
    page,
    write,
)
from camfleet.controller.commands import config_from_json
from camfleet.controller.desired import validate_config
from camfleet.errors import UserError
from camfleet.proto import credentials
from camfleet.proto.topics import validate_group

router = APIRouter(prefix="/api/v1", tags=["devices"])


def _device_json(request: Request, tx: Any, row: dict[str, Any]) -> dict[str, Any]:
    return registry.device_row_to_json(tx, row, ctl(request).device_state(row))


@router.get("/devices")
def list_devices(request: Request, state: str | None = None, group: str | None = None) -> Any:
    """Every device with its derived state (online/asleep/overdue/offline/unknown)."""
    with ctl(request).db.read() as tx:
        rows = tx.query("SELECT * FROM devices ORDER BY device_id")
        items = [_device_json(request, tx, r) for r in rows]
    if state is not None:
        items = [d for d in items if d["state"] == state]
    if group is not None:
        items = [d for d in items if group in d["groups"]]
    return page(items)


@router.get("/devices/{device_id}", responses=not_found("device"))
def device_detail(request: Request, device_id: str) -> Any:
    c = ctl(request)
    device_id_or_404(device_id)
    with c.db.read() as tx:
        row = tx.one("SELECT * FROM devices WHERE device_id = ?", (device_id,))
        if row is None:
            raise HTTPException(404, f"no device {device_id!r}")
        out = _device_json(request, tx, row)
        tel = tx.one(
            "SELECT data FROM telemetry WHERE device_id = ? ORDER BY received_ms DESC LIMIT 1",
            (device_id,),
        )
        out["telemetry"] = json.loads(tel["data"]) if tel else None
        out["config"] = c.desired.status(tx, device_id)
        out["pending_commands"] = tx.scalar(
            "SELECT COUNT(*) FROM commands WHERE device_id = ? AND status IN "
            "('queued', 'sent', 'accepted')",
            (device_id,),
        )
        out["frames"] = tx.scalar("SELECT COUNT(*) FROM frames WHERE device_id = ?", (device_id,))
    return out


class DevicePatch(BaseModel):
    groups: list[str] | None = Field(default=None, description="Replace the device's groups.")
    tags: dict[str, str] | None = Field(default=None, description="Replace the device's tags.")


@router.patch("/devices/{device_id}", **write(BAD_DEVICE_ID))
def patch_device(request: Request, device_id: str, body: DevicePatch) -> Any:
    c = ctl(request)
    device_id_or_404(device_id)
    try:
        groups = [validate_group(g) for g in body.groups] if body.groups is not None else None
    except ValueError as exc:
        raise bad_request(exc) from None
    with c.db.transaction() as tx:
        registry.touch(tx, device_id, _now())
        if groups is not None:
            registry.set_groups(tx, device_id, groups)
        if body.tags is not None:
            registry.set_tags(tx, device_id, body.tags)
    c.desired.refresh([device_id])
    return device_detail(request, device_id)


@router.get("/devices/{device_id}/telemetry", responses=BAD_DEVICE_ID)
def telemetry(request: Request, device_id: str, limit: int = 100) -> Any:
    device_id_or_404(device_id)
    with ctl(request).db.read() as tx:
        rows = tx.query(
            "SELECT received_ms, data FROM telemetry WHERE device_id = ? "
            "ORDER BY received_ms DESC LIMIT ?",
            (device_id, min(max(limit, 1), 10_000)),
        )
    return page([{"received_ms": r["received_ms"], **json.loads(r["data"])} for r in rows])


@router.get("/devices/{device_id}/events", responses=BAD_DEVICE_ID)
def events(request: Request, device_id: str, limit: int = 100, type: str | None = None) -> Any:
    device_id_or_404(device_id)
    sql = "SELECT * FROM events WHERE device_id = ?"
    params: list[Any] = [device_id]
    if type is not None:
        sql += " AND type = ?"
        params.append(type)
    with ctl(request).db.read() as tx:
        rows = tx.query(sql + " ORDER BY received_ms DESC LIMIT ?", [*params, min(limit, 10_000)])
    for r in rows:
        r["attributes"] = json.loads(r["attributes"])
    return page(rows)


class ConfigBody(BaseModel):
    config: dict[str, Any] = Field(description="A DeviceConfig in protobuf JSON form.")
    replace: bool = Field(default=False, description="Replace the layer instead of merging.")


def _set_config(request: Request, scope: str, name: str, body: ConfigBody) -> None:
    try:
        cfg = config_from_json(body.config)
    except UserError as exc:
        raise bad_request(exc) from None
    problems = validate_config(cfg)
    if problems:
        raise HTTPException(422, "; ".join(problems))
    ctl(request).desired.set_layer(scope, name, cfg, merge=not body.replace)


@router.get("/devices/{device_id}/config", responses=BAD_DEVICE_ID)
def get_device_config(request: Request, device_id: str) -> Any:
    """Desired (merged) config with version, the device's overrides, reported version, drift."""
    device_id_or_404(device_id)
    c = ctl(request)
    with c.db.read() as tx:
        return c.desired.status(tx, device_id)


@router.put("/devices/{device_id}/config", **write(BAD_DEVICE_ID))
def put_device_config(request: Request, device_id: str, body: ConfigBody) -> Any:
    device_id_or_404(device_id)
    _set_config(request, "device", device_id, body)
    return get_device_config(request, device_id)


@router.get("/groups/{group}/config", responses=BAD_GROUP)
def get_group_config(request: Request, group: str) -> Any:
    from camfleet.controller.desired import to_json

    group_or_404(group)
    c = ctl(request)
    with c.db.read() as tx:
        return {"group": group, "config": to_json(c.desired.get_layer(tx, "group", group))}


@router.put("/groups/{group}/config", **write(BAD_GROUP))
def put_group_config(request: Request, group: str, body: ConfigBody) -> Any:
    group_or_404(group)
    _set_config(request, "group", group, body)
    return get_group_config(request, group)


def _now() -> int:
    import time

    return int(time.time() * 1000)


class CredentialsBody(BaseModel):
    username: str = Field(
        min_length=1,
        max_length=200,
        description="The device's new broker identity (`camfleet device rotate` creates it).",
    )
    password: str = Field(min_length=1, max_length=200, description="Its password.")


@router.put(
    "/devices/{device_id}/credentials",
    **admin(
        BAD_DEVICE_ID,
        {409: {"model": ErrorBody, "description": "The device has no key to encrypt them with."}},
    ),
)
def put_credentials(request: Request, device_id: str, body: CredentialsBody) -> Any:
    """Deliver new broker credentials to the device through its desired config: the password
    is encrypted for the device with a key derived from its own (docs/protocol.md
    "Credentials"), so other readers of the desired topic learn nothing. Used by `camfleet
    device rotate`, which creates the identity first and retires the old one once the device
    reports the new one in use."""
    c = ctl(request)
    device_id_or_404(device_id)
    key = c.device_keys.get(device_id)
    if key is None:
        raise HTTPException(409, f"{device_id!r} has no key: enrol it with `camfleet device add`")
    sealed = credentials.seal(key, device_id, body.username, body.password)
    version = c.desired.set_credentials(device_id, sealed)
    return {"device_id": device_id, "username": body.username, "desired_version": version}
