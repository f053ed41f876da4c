"""Build the FastAPI application around a running Controller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi_offline import FastAPIOffline

from camfleet import __version__
from camfleet.controller.api import commands, dashboard, devices, frames, ota, schedules, users
from camfleet.controller.api.deps import ctl

if TYPE_CHECKING:
    from camfleet.controller.service import Controller


def create_app(controller: Controller) -> FastAPI:
    # /docs (Swagger UI) and /redoc with their scripts served by the controller itself, from
    # the fastapi-offline package: a fleet's controller often has no internet, and FastAPI's own
    # pages load theirs from a CDN (a blank page offline).
    app = FastAPIOffline(
        title="camfleet controller",
        version=__version__,
        description="Fleet registry, frames, commands, desired config and schedules. "
        "Writes need `Authorization: Bearer <token>` (the bearerAuth scheme) of a user whose "
        "role allows them: each route's `x-camfleet-role` (operator or admin); reads are open.",
        static_url="/docs-assets",
        favicon_url="data:,",
    )
    app.state.controller = controller
    for module in (devices, frames, commands, schedules, ota, users, dashboard):
        app.include_router(module.router)
    from camfleet.controller.web import routes as web

    web.mount(app)  # the dashboard at /

    @app.get("/health", tags=["ops"])
    def health(request: Request) -> Any:
        return ctl(request).health()

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics(request: Request) -> Any:
        return PlainTextResponse(
            ctl(request).metrics.exposition(), media_type="text/plain; version=0.0.4"
        )

    return app
