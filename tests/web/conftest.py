"""Browser tests: Debian's chromium driven by Playwright against a real controller (HTTP API and
dashboard on 127.0.0.1) with simulated devices on the test's own mosquitto.

Every page a test opens is watched: a console error, an uncaught page error, or a request to
anywhere but the controller fails the test at teardown. Screenshots go to build/screenshots/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from camfleet.controller.service import Controller
from camfleet.mosquitto import Mosquitto, free_port
from camfleet.testing.browser import launch
from camfleet.testing.controller_process import start_controller
from camfleet.testing.ota_images import ReleaseKey
from camfleet.testing.pictures import picture_jpeg
from camfleet.testing.sim_device import SimDevice, unique_id
from tests.ota_helpers import release_key

__all__ = ["release_key"]  # fixture

TOKEN = "dash-token"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@dataclass
class Dash:
    ctl: Controller
    url: str
    broker: Mosquitto
    made: list[SimDevice] = field(default_factory=list)

    def device(self, prefix: str = "cam", **kw: Any) -> SimDevice:
        """A connected simulated device whose captures are real pictures."""

        def capture(dev: SimDevice, cmd: Any) -> None:
            for _ in range(max(cmd.capture.count, 1)):
                dev.publish_frame(
                    dev.make_frame(data=picture_jpeg(dev.next_seq), command_id=cmd.id)
                )

        kw.setdefault("on_capture", capture)
        dev = SimDevice(self.broker.host, self.broker.port, unique_id(prefix), **kw)
        self.made.append(dev)
        return dev.connect()

    def send_picture(self, dev: SimDevice, **fields: Any) -> str:
        """Publish one real JPEG frame; returns its frame id (SESSION-SEQ)."""
        frame = dev.make_frame(data=picture_jpeg(dev.next_seq, label=dev.device_id), **fields)
        dev.publish_frame(frame)
        return f"{frame.session}-{frame.seq}"


@pytest.fixture
def dash(mosquitto: Mosquitto, tmp_path: Path, release_key: ReleaseKey) -> Iterator[Dash]:
    port = free_port()
    ctl = start_controller(
        mosquitto.url,
        tmp_path / "data",
        http=f"127.0.0.1:{port}",
        token=TOKEN,
        ota_public_key=str(release_key.public),
    )
    d = Dash(ctl, f"http://127.0.0.1:{port}", mosquitto)
    yield d
    for dev in d.made:
        dev.disconnect()
    ctl.stop()


@dataclass
class Watched:
    page: Page
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def open_page(browser: Browser, dash: Dash) -> Iterator[Callable[..., Watched]]:
    """Open the dashboard at a route; the page is checked at teardown."""
    watched: list[Watched] = []
    contexts = []

    def open_(route: str = "#/", width: int = 1280, height: int = 900) -> Watched:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        w = Watched(page)
        page.on(
            "console",
            lambda msg: w.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: w.console_errors.append(f"page error: {exc}"))
        page.on("request", lambda req: w.requests.append(req.url))
        page.goto(f"{dash.url}/{route}")
        page.wait_for_function("document.body.dataset.ready !== undefined")
        watched.append(w)
        return w

    yield open_
    for context in contexts:
        context.close()
    for w in watched:
        assert w.console_errors == [], w.console_errors
        origin = urlparse(dash.url)
        foreign = [
            u
            for u in w.requests
            if not u.startswith(("data:", f"blob:{dash.url}/"))
            and (urlparse(u).hostname, urlparse(u).port) != (origin.hostname, origin.port)
        ]
        assert foreign == [], foreign
