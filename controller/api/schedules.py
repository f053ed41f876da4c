"""Schedules: CRUD."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from camfleet.controller.api.deps import WRITE, bad_request, ctl, not_found, page, write
from camfleet.errors import UserError
from camfleet.proto.errors import ContractError

router = APIRouter(prefix="/api/v1", tags=["schedules"])


class ScheduleBody(BaseModel):
    target_kind: str = Field(description="device, group or all")
    target: str = Field(default="", description="device id or group name ('' for all)")
    kind: str = Field(description="cron, interval or once")
    spec: str = Field(description="cron: 5 fields UTC; interval: seconds; once: ISO time or ms")
    capture_count: int = 1
    start: str | None = Field(default=None, description="first slot (interval anchor)")


class SchedulePatch(BaseModel):
    enabled: bool


@router.get("/schedules")
def list_schedules(request: Request) -> Any:
    return page(ctl(request).scheduler.list_all())


@router.post("/schedules", status_code=201, **WRITE)
def create_schedule(request: Request, body: ScheduleBody) -> Any:
    try:
        return ctl(request).scheduler.create(
            body.target_kind, body.target, body.kind, body.spec, body.capture_count, body.start
        )
    except (UserError, ContractError) as exc:
        raise bad_request(exc) from None


@router.get("/schedules/{schedule_id}", responses=not_found("schedule"))
def get_schedule(request: Request, schedule_id: str) -> Any:
    try:
        return ctl(request).scheduler.get(schedule_id)
    except KeyError:
        raise HTTPException(404, f"no schedule {schedule_id!r}") from None


@router.patch("/schedules/{schedule_id}", **write(not_found("schedule")))
def patch_schedule(request: Request, schedule_id: str, body: SchedulePatch) -> Any:
    try:
        return ctl(request).scheduler.set_enabled(schedule_id, body.enabled)
    except KeyError:
        raise HTTPException(404, f"no schedule {schedule_id!r}") from None


@router.delete("/schedules/{schedule_id}", status_code=204, **write(not_found("schedule")))
def delete_schedule(request: Request, schedule_id: str) -> None:
    if not ctl(request).scheduler.delete(schedule_id):
        raise HTTPException(404, f"no schedule {schedule_id!r}")
