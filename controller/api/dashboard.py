"""What the dashboard reads beyond the plain API: the fleet summary in one request, frame
thumbnails, and the live event stream (server-sent events) fed by the ingest."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from camfleet.controller import registry
from camfleet.controller.api.deps import (
    BAD_DEVICE_ID,
    WRITE,
    ErrorBody,
    bad_request,
    ctl,
    device_id_or_404,
    not_found,
    page,
    write,
)
from camfleet.controller.api.frames import _row
from camfleet.controller.commands import config_from_json
from camfleet.controller.desired import validate_config
from camfleet.controller.frames import index as frames_index
from camfleet.controller.live import Event
from camfleet.errors import UserError

router = APIRouter(prefix="/api/v1", tags=["dashboard"])

#: Events a slow browser may fall behind by before it is told to reload (``resync``).
LIVE_BACKLOG = 1000
#: Seconds between keep-alive comments (proxies close idle streams; a gone client is noticed).
KEEPALIVE_S = 15.0


@router.get("/fleet")
def fleet(request: Request) -> Any:
    """Every device with its state, groups, latest telemetry (battery, RSSI, spool depth) and
    latest frame: the dashboard's grid in one request."""
    c = ctl(request)
    with c.db.read() as tx:
        rows = tx.query("SELECT * FROM devices ORDER BY device_id")
        groups: dict[str, list[str]] = {}
        for g in tx.query("SELECT device_id, group_name FROM device_groups ORDER BY group_name"):
            groups.setdefault(g["device_id"], []).append(g["group_name"])
        telemetry = {
            t["device_id"]: json.loads(t["data"])
            for t in tx.query(
                "SELECT t.device_id, t.data FROM telemetry t WHERE t.received_ms = "
                "(SELECT MAX(received_ms) FROM telemetry u WHERE u.device_id = t.device_id)"
            )
        }
        latest = {
            f["device_id"]: f"{f['session']}-{f['seq']}"
            for f in tx.query(
                "SELECT f.device_id, f.session, f.seq FROM frames f WHERE f.captured_at_ms = "
                "(SELECT MAX(captured_at_ms) FROM frames g WHERE g.device_id = f.device_id)"
            )
        }
        pending = {
            r["device_id"]: r["n"]
            for r in tx.query(
                "SELECT device_id, COUNT(*) AS n FROM commands "
                "WHERE status IN ('queued', 'sent', 'accepted') GROUP BY device_id"
            )
        }
    items = []
    for row in rows:
        d = row["device_id"]
        t = telemetry.get(d, {})
        items.append(
            {
                "device_id": d,
                "state": c.device_state(row),
                "presence": row["presence"],
                "last_seen_ms": row["last_seen_ms"],
                "next_wake_ms": row["next_wake_ms"] or None,
                "firmware": row["firmware"],
                "platform": row["platform"],
                "groups": groups.get(d, []),
                "last_frame_ms": row["last_frame_ms"] or None,
                "latest_frame": latest.get(d),
                "battery_pct": t.get("battery_pct"),
                "rssi_dbm": t.get("rssi_dbm"),
                "spool_depth": t.get("spool_depth"),
                "pending_commands": pending.get(d, 0),
            }
        )
    return page(items, states=list(registry.DERIVED_STATES))


@router.get(
    "/frames/{device_id}/{frame_id}/thumb",
    response_class=Response,
    responses={
        **not_found("frame"),
        200: {"content": {"image/jpeg": {}}, "description": "A JPEG of at most 320 px."},
        410: {"model": ErrorBody, "description": "The frame's file is gone from the store."},
        415: {"model": ErrorBody, "description": "The frame is not an image Pillow reads."},
    },
)
def frame_thumb(request: Request, device_id: str, frame_id: str) -> Any:
    """A JPEG thumbnail (at most 320 px) of a frame (``latest`` for the newest), made once."""
    c = ctl(request)
    row = _row(request, device_id, frame_id)
    try:
        data = c.thumbs.get(row["store_key"], lambda: c.store.get(row["store_key"]))
    except FileNotFoundError:
        raise HTTPException(410, "the frame's file is gone") from None
    except ValueError as exc:
        raise HTTPException(415, str(exc)) from None
    # A frame never changes: its thumbnail may be cached for good ("latest" may not).
    cache = "no-cache" if frame_id == "latest" else "public, max-age=31536000, immutable"
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": cache})


@router.get("/live", response_class=StreamingResponse)
async def live(request: Request, device: str | None = None) -> Any:
    """Server-sent events of what the controller just committed: ``state``, ``telemetry``,
    ``event``, ``frame`` and ``command`` (each a JSON object with ``device_id``), for the whole
    fleet or one ``device``. ``resync`` means events were dropped (the client fell behind by
    more than 1,000): reload what is shown."""
    if device is not None:
        device_id_or_404(device)
    c = ctl(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=LIVE_BACKLOG)

    def put(event: Event) -> None:  # in the event loop
        if queue.full():
            while not queue.empty():
                queue.get_nowait()
            event = {"type": "resync"}
        queue.put_nowait(event)

    def listener(event: Event) -> None:  # in the writer thread
        if event["type"] == "closing" or device is None or event.get("device_id") == device:
            try:
                loop.call_soon_threadsafe(put, event)
            except RuntimeError:
                pass  # the server's loop is gone: nobody to tell

    unsubscribe = c.live.subscribe(listener)

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if event["type"] == "closing":
                    return  # the controller stops: end the response so the server can too
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class ConfigCheck(BaseModel):
    config: dict[str, Any] = Field(description="A DeviceConfig in protobuf JSON form.")


@router.post("/config/validate", **WRITE)
def validate_config_body(body: ConfigCheck) -> Any:
    """Check a config without storing it: ``{"problems": [...]}``, empty when a device would
    accept it (the dashboard's editor shows them inline as one types). It stores nothing, but
    like every POST it needs the token: whoever may not change a config has nothing to check."""
    try:
        cfg = config_from_json(body.config)
    except UserError as exc:
        return {"problems": [str(exc)]}
    return {"problems": validate_config(cfg)}


@router.get("/events")
def fleet_events(request: Request, limit: int = 200, device: str | None = None) -> Any:
    """Device events across the fleet (or one device), newest first."""
    sql = "SELECT * FROM events"
    params: list[Any] = []
    if device is not None:
        sql += " WHERE device_id = ?"
        params.append(device_id_or_404(device))
    with ctl(request).db.read() as tx:
        rows = tx.query(
            sql + " ORDER BY received_ms DESC LIMIT ?", [*params, min(max(limit, 1), 5000)]
        )
    for r in rows:
        r["attributes"] = json.loads(r["attributes"])
    return page(rows)


@router.get("/gallery/{device_id}", responses=BAD_DEVICE_ID)
def gallery(
    request: Request, device_id: str, since_ms: int = 0, until_ms: int | None = None
) -> Any:
    """A device's frames in a time range, newest first, as compact ``[id, captured_at_ms]``
    pairs (a day of 1,000 frames is ~30 KB instead of ~500 KB of full metadata), with its
    latest frame whatever the range."""
    device_id_or_404(device_id)
    sql = (
        "SELECT session, seq, captured_at_ms FROM frames "
        "WHERE device_id = ? AND captured_at_ms >= ?"
    )
    params: list[Any] = [device_id, since_ms]
    if until_ms is not None:
        sql += " AND captured_at_ms < ?"
        params.append(until_ms)
    with ctl(request).db.read() as tx:
        rows = tx.query(sql + " ORDER BY captured_at_ms DESC, session DESC, seq DESC", params)
        newest = frames_index.latest(tx, device_id)
    items = [[f"{r['session']}-{r['seq']}", r["captured_at_ms"]] for r in rows]
    latest = (
        {"id": f"{newest['session']}-{newest['seq']}", "captured_at_ms": newest["captured_at_ms"]}
        if newest
        else None
    )
    return {"items": items, "count": len(items), "latest": latest}


class TimelapseBody(BaseModel):
    device: str
    since_ms: int
    until_ms: int
    fps: float = Field(default=12.0, gt=0, le=60)
    format: Literal["gif", "mp4"] = "gif"
    width: int = Field(default=640, ge=64, le=1920)


#: A timelapse decodes every frame of its range: one at a time per controller (a Pi has 4 cores
#: and ingest comes first), and at most this many frames.
TIMELAPSE_MAX_FRAMES = 5000
_timelapse_lock = threading.Lock()


@router.post(
    "/timelapse",
    response_class=FileResponse,
    **write(
        {
            200: {"content": {"image/gif": {}, "video/mp4": {}}, "description": "The file."},
            409: {"model": ErrorBody, "description": "Another timelapse is being made."},
        },
        BAD_DEVICE_ID,
    ),
)
def make_timelapse(request: Request, body: TimelapseBody) -> Any:
    """A timelapse of a device's frames in [since_ms, until_ms) as a GIF or an MP4 (as
    ``camfleet frames timelapse`` makes it). 422 when the range has no frames; 409 while another
    timelapse is being made."""
    from camfleet import timelapse

    c = ctl(request)
    device_id_or_404(body.device)
    with c.db.read() as tx:
        rows = tx.query(
            "SELECT store_key, captured_at_ms FROM frames WHERE device_id = ? AND "
            "captured_at_ms >= ? AND captured_at_ms < ? AND content_type = 'image/jpeg' "
            "ORDER BY captured_at_ms, session, seq LIMIT ?",
            (body.device, body.since_ms, body.until_ms, TIMELAPSE_MAX_FRAMES + 1),
        )
    if len(rows) > TIMELAPSE_MAX_FRAMES:
        raise HTTPException(422, f"more than {TIMELAPSE_MAX_FRAMES} frames: choose a shorter range")
    if not _timelapse_lock.acquire(blocking=False):
        raise HTTPException(409, "another timelapse is being made: try again when it is done")
    tmp_dir = Path(tempfile.mkdtemp(prefix="timelapse-", dir=c.data))
    out = tmp_dir / f"{body.device}.{body.format}"
    try:
        timelapse.make(
            [(r["store_key"], r["captured_at_ms"]) for r in rows],
            c.store.get,
            out,
            body.fps,
            body.width,
            f"of {body.device} in that range",
        )
    except UserError as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise bad_request(exc) from None
    finally:
        _timelapse_lock.release()
    return FileResponse(
        out,
        media_type="image/gif" if body.format == "gif" else "video/mp4",
        filename=out.name,
        background=BackgroundTask(shutil.rmtree, tmp_dir, True),
    )
