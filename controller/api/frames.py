"""Frames: list with filters, metadata, JPEG download, latest per device."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response

from camfleet.controller.api.deps import ErrorBody, ctl, device_id_or_404, not_found, page
from camfleet.controller.frames import index as frames_index

_UINT32 = 2**32 - 1

router = APIRouter(prefix="/api/v1", tags=["frames"])


@router.get("/frames")
def list_frames(
    request: Request,
    device: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    command_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Any:
    """Stored frames, newest first."""
    with ctl(request).db.read() as tx:
        rows = frames_index.query(
            tx, device, since_ms, until_ms, command_id, min(max(limit, 1), 10_000), max(offset, 0)
        )
    return page([frames_index.to_json(r) for r in rows], offset=offset)


def _parse_frame_id(frame_id: str) -> tuple[int, int]:
    session, _, seq = frame_id.removesuffix(".jpg").partition("-")
    # isascii: str.isdigit accepts other scripts' digits; the bound: sessions and seqs are
    # uint32 on the wire, and a larger number overflows the database's integer.
    if not (session.isascii() and seq.isascii() and session.isdigit() and seq.isdigit()):
        raise HTTPException(404, f"no frame {frame_id!r}: ids look like SESSION-SEQ")
    if int(session) > _UINT32 or int(seq) > _UINT32:
        raise HTTPException(404, f"no frame {frame_id!r}: session and seq are at most {_UINT32}")
    return int(session), int(seq)


def _row(request: Request, device_id: str, frame_id: str) -> dict[str, Any]:
    device_id_or_404(device_id)
    with ctl(request).db.read() as tx:
        if frame_id == "latest":
            row = frames_index.latest(tx, device_id)
        else:
            row = frames_index.get(tx, device_id, *_parse_frame_id(frame_id))
    if row is None:
        raise HTTPException(404, f"no frame {frame_id} of {device_id}")
    return row


@router.get("/frames/{device_id}/{frame_id}", responses=not_found("frame"))
def frame_meta(request: Request, device_id: str, frame_id: str) -> Any:
    """Metadata of a frame (``latest`` for the newest)."""
    return frames_index.to_json(_row(request, device_id, frame_id))


@router.get(
    "/frames/{device_id}/{frame_id}/image",
    response_class=Response,
    responses={
        **not_found("frame"),
        200: {"content": {"image/jpeg": {}}, "description": "The image bytes."},
        410: {"model": ErrorBody, "description": "The frame's file is gone from the store."},
    },
)
def frame_image(request: Request, device_id: str, frame_id: str) -> Any:
    """The image bytes (``latest`` for the newest)."""
    row = _row(request, device_id, frame_id)
    store = ctl(request).store
    path = store.path(row["store_key"])
    if path is not None:
        if not path.exists():
            raise HTTPException(410, "the frame's file is gone")
        return FileResponse(path, media_type=row["content_type"])
    return Response(store.get(row["store_key"]), media_type=row["content_type"])
