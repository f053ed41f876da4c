"""Build the FastAPI application around a running Controller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from camfleet import __version__
from camfleet.controller.api import commands, devices, frames, schedules, users
from camfleet.controller.api.deps import ctl

if TYPE_CHECKING:
    from camfleet.controller.service import Controller


def create_app(controller: Controller) -> FastAPI:
    app = FastAPI(
        title="camfleet controller",
        version=__version__,
        description="Fleet registry, frames, commands, desired config and schedules. "
        "Writes need `Authorization: Bearer <token>` of a user whose role allows them "
        "(`x-camfleet-role` on each route: operator or admin); reads are open.",
    )
    app.state.controller = controller
    for module in (devices, frames, commands, schedules, users):
        app.include_router(module.router)

    @app.get("/health", tags=["ops"])
    def health(request: Request) -> Any:
        return ctl(request).health()

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics(request: Request) -> Any:
        return PlainTextResponse(
            ctl(request).metrics.exposition(), media_type="text/plain; version=0.0.4"
        )

    return app
