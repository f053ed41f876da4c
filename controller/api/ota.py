"""OTA: artifacts (upload, list, remove), device keys, rollouts (create, control, status)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from camfleet.controller.api.deps import (
    BAD_DEVICE_ID,
    ErrorBody,
    admin,
    bad_request,
    ctl,
    device_id_or_404,
    not_found,
    page,
)
from camfleet.controller.ota import rollouts as ro
from camfleet.controller.ota.artifacts import NotFound
from camfleet.errors import UserError
from camfleet.proto.errors import ContractError

router = APIRouter(prefix="/api/v1/ota", tags=["ota"])

#: Larger than any OTA slot of an ESP32 flash: a body beyond it is refused before it is read.
MAX_UPLOAD = 16 * 1024 * 1024

REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "Refused; the detail says why."}
}
IN_USE: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Not possible in the current state (e.g. in use)."}
}
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "The image is larger than any OTA slot."}
}


@router.post("/artifacts", status_code=201, **admin(REFUSED, TOO_LARGE))
async def upload_artifact(
    request: Request, version: str = "", filename: str = "", signature: str = ""
) -> Any:
    """Body: the signed ESP32 app image, or an edge-agent bundle with ``signature`` (hex of its
    detached 64-byte Ed25519 signature) (application/octet-stream). 422 says why it is
    refused."""
    try:
        sig = bytes.fromhex(signature) if signature else None
    except ValueError:
        raise HTTPException(422, "signature is not hex") from None
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_UPLOAD:
        raise HTTPException(413, f"image of {size} bytes is larger than any OTA slot")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_UPLOAD:
            raise HTTPException(413, "image larger than any OTA slot")
    try:
        return ctl(request).artifacts.add(bytes(body), version or None, filename, sig)
    except UserError as exc:
        raise bad_request(exc) from None


@router.get("/artifacts")
def list_artifacts(request: Request) -> Any:
    return page(ctl(request).artifacts.list())


@router.delete("/artifacts/{artifact_id}", **admin(not_found("artifact"), IN_USE))
def remove_artifact(request: Request, artifact_id: str) -> Any:
    try:
        ctl(request).artifacts.remove(artifact_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except UserError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"deleted": artifact_id}


class DeviceKeyBody(BaseModel):
    hmac_key_hex: str = Field(description="The device's HMAC key (NVS hmac_key), hex")


@router.put("/device-keys/{device_id}", **admin(BAD_DEVICE_ID))
def put_device_key(request: Request, device_id: str, body: DeviceKeyBody) -> Any:
    device_id_or_404(device_id)
    try:
        # through the controller's key store, so its signing uses the new key at once
        ctl(request).device_keys.put(device_id, bytes.fromhex(body.hmac_key_hex))
    except ValueError:
        raise HTTPException(422, "hmac_key_hex is not hex") from None
    except UserError as exc:
        raise bad_request(exc) from None
    return {"device_id": device_id, "key_set": True}


class RolloutBody(BaseModel):
    artifact: str
    target: str = Field(default="all", description="group:G, devices:a,b or all")
    only_version: str | None = None
    canary: int = 0
    phases: str = "100%"
    max_failure: str = "10%"
    min_sample: int = 3
    device_timeout: str = "2h"
    retries: int = 0
    rate: str | None = Field(default=None, description="e.g. 20/min")
    manual_gate: bool = False
    allow_downgrade: bool = False


@router.post("/rollouts", status_code=201, **admin(not_found("artifact"), REFUSED))
def create_rollout(request: Request, body: RolloutBody) -> Any:
    c = ctl(request)
    try:
        opts = ro.RolloutOptions(
            target=body.target,
            only_version=body.only_version,
            canary=body.canary,
            phases=ro.parse_phases(body.phases),
            max_failure=ro.parse_percent(body.max_failure),
            min_sample=body.min_sample,
            device_timeout_s=ro.parse_duration(body.device_timeout),
            retries=body.retries,
            rate_per_min=ro.parse_rate(body.rate) if body.rate else None,
            manual_gate=body.manual_gate,
            allow_downgrade=body.allow_downgrade,
        )
        rollout = c.rollouts.create(body.artifact, opts)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except (UserError, ContractError) as exc:
        raise bad_request(exc) from None
    return c.rollouts.status(rollout["id"], c.device_state)


@router.get("/rollouts")
def list_rollouts(request: Request) -> Any:
    return page(ctl(request).rollouts.list())


@router.get("/rollouts/{rollout_id}", responses=not_found("rollout"))
def rollout_status(request: Request, rollout_id: str, since_ms: int = 0) -> Any:
    c = ctl(request)
    try:
        return c.rollouts.status(rollout_id, c.device_state, since_ms)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.post("/rollouts/{rollout_id}/{action}", **admin(not_found("rollout or action"), IN_USE))
def control_rollout(request: Request, rollout_id: str, action: str) -> Any:
    c = ctl(request)
    if action not in ("pause", "resume", "abort"):
        raise HTTPException(404, f"no action {action!r}: pause, resume or abort")
    try:
        c.rollouts.set_state(rollout_id, action)
        return c.rollouts.status(rollout_id, c.device_state)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except UserError as exc:
        raise HTTPException(409, str(exc)) from None
