"""Fixtures of the controller tests: controllers on a test's own mosquitto, simulated devices."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from camfleet.controller.service import Controller
from camfleet.mosquitto import Mosquitto
from camfleet.testing.controller_process import start_controller
from camfleet.testing.sim_device import SimDevice, unique_id


@pytest.fixture
def controllers(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Callable[..., Controller]]:
    """Start in-process controllers on the test's mosquitto (stopped at teardown)."""
    started: list[Controller] = []

    def start(data: Path | None = None, **overrides: Any) -> Controller:
        ctl = start_controller(mosquitto.url, data or tmp_path / "data", **overrides)
        started.append(ctl)
        return ctl

    yield start
    for ctl in started:
        try:
            ctl.stop()
        except Exception:
            pass


@pytest.fixture
def devices(mosquitto: Mosquitto) -> Iterator[Callable[..., SimDevice]]:
    """Make connected simulated devices on the test's mosquitto."""
    made: list[SimDevice] = []

    def make(prefix: str = "cam", connect: bool = True, **kw: Any) -> SimDevice:
        dev = SimDevice(mosquitto.host, mosquitto.port, unique_id(prefix), **kw)
        made.append(dev)
        return dev.connect() if connect else dev

    yield make
    for dev in made:
        dev.disconnect()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    from .pg import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A migrated registry database: each test using it runs on SQLite and on PostgreSQL."""
    from camfleet.controller.storage import open_database
    from camfleet.controller.storage.migrations import migrate

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    else:
        from .pg import fresh_database

        server = request.getfixturevalue("postgres_server_url")
        url = fresh_database(server, unique_id("t").replace("-", "_"))
    db = open_database(url, tmp_path / "unused.sqlite3")
    migrate(db)
    db.url = url  # type: ignore[attr-defined]
    yield db
    db.close()
