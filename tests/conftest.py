"""Shared fixtures: real brokers on free ports, owned by the test that uses them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from camfleet.embedded_broker import EmbeddedBroker
from camfleet.mosquitto import Mosquitto

_skipped: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests marked slow first (the soak, the fault suite, the demos, the wheel): with
    scripts/test's two workers a long test started last would run alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test proves nothing: fail the run, and say to install what the test needs."""
    if _skipped and exitstatus == 0:
        print(f"\nFAILED: {len(_skipped)} skipped test(s); install what they need instead:")
        for nodeid in _skipped:
            print(f"  {nodeid}")
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def _own_user_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`camfleet controller run` saves its API token in the user's config directory, an edge
    agent without agent.state_dir keeps its state in the user's state directory: tests (and the
    processes they start) get their own, never the developer's ~/.config or ~/.local/state."""
    names = ("XDG_CONFIG_HOME", "XDG_STATE_HOME")
    old = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = str(tmp_path_factory.mktemp(name.lower()))
    yield
    for name, value in old.items():
        if value is None:
            del os.environ[name]
        else:
            os.environ[name] = value


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto of this test's own: it may stop(), kill() and restart() it."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture(scope="session")
def shared_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One mosquitto for the whole session, for tests that never stop it (use unique topics)."""
    broker = Mosquitto(tmp_path_factory.mktemp("shared-mosquitto"))
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
def amqtt_broker() -> Iterator[EmbeddedBroker]:
    """The embedded pure-Python broker (MQTT 3.1.1), to prove the contract is broker-agnostic."""
    broker = EmbeddedBroker()
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(params=["mosquitto", "amqtt"])
def any_broker(request: pytest.FixtureRequest) -> Mosquitto | EmbeddedBroker:
    """Each test using it runs once against mosquitto and once against amqtt."""
    return request.getfixturevalue("mosquitto" if request.param == "mosquitto" else "amqtt_broker")
