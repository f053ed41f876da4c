"""Run the API with uvicorn in a background thread of the controller process."""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import TYPE_CHECKING

import uvicorn

from camfleet.controller.api.app import create_app
from camfleet.errors import UserError

if TYPE_CHECKING:
    from camfleet.controller.service import Controller

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: may resolve to anything


class HttpServer:
    def __init__(self, controller: Controller, host: str, port: int) -> None:
        config = uvicorn.Config(
            create_app(controller), host=host, port=port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.host, self.port = host, port
        self._thread = threading.Thread(target=self.server.run, name="camfleet-http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if self.server.started or not self._thread.is_alive():
                break
            deadline.wait(0.05)  # uvicorn exposes no start event; poll its flag
        if not self.server.started:
            raise UserError(f"the HTTP API could not listen on {self.host}:{self.port}")
        if not is_loopback(self.host):
            log.warning(
                "the HTTP API listens on %s:%d without TLS: bearer tokens travel in clear; "
                "serve it through a TLS reverse proxy (docs/controller.md, 'API users')",
                self.host,
                self.port,
            )

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
