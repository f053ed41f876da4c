"""Fixtures for the edge agent tests: configs, in-process agents, test receivers."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from camfleet.edge.agent import EdgeAgent, FrameObserver
from camfleet.edge.config import EdgeConfig, config_from_dict
from camfleet.mosquitto import Mosquitto
from camfleet.testing.device_receiver import DeviceReceiver as Receiver

_ids = itertools.count(1)


def agent_config(
    tmp_path: Path, mqtt: Mosquitto, device_id: str, **sections: dict[str, Any]
) -> EdgeConfig:
    """A config dict for ``device_id`` on ``broker``, state under tmp_path, fast reconnects."""
    data: dict[str, Any] = {
        "device": {"id": device_id, "board": "test-board"},
        "broker": {
            "url": mqtt.url,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.3,
            "keepalive_s": 5,
        },
        "camera": {"backend": "synthetic", "width": 160, "height": 120, "options": {"seed": 7}},
        "spool": {"fsync": True},
        "agent": {"state_dir": str(tmp_path / device_id / "state"), "telemetry_interval_s": 0},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data, source="test")


class RunningAgent:
    """An EdgeAgent running on its own thread, stopped by the fixture."""

    def __init__(
        self, config: EdgeConfig, camera: Any = None, observers: Iterable[FrameObserver] = ()
    ) -> None:
        self.agent = EdgeAgent(config, camera=camera)
        # before the thread starts: a schedule may capture before the test gets the agent
        self.agent.observers.extend(observers)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.agent.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "agent did not stop"
        self.agent.close()


@pytest.fixture
def device_id(request: pytest.FixtureRequest) -> str:
    return f"edge-{next(_ids)}-{abs(hash(request.node.name)) % 10**6}"


@pytest.fixture
def run_agent() -> Iterator[Callable[..., RunningAgent]]:
    started: list[RunningAgent] = []

    def start(
        config: EdgeConfig, camera: Any = None, observers: Iterable[FrameObserver] = ()
    ) -> RunningAgent:
        running = RunningAgent(config, camera, observers)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def receiver_for() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(broker: Mosquitto, device_id: str, **kwargs: Any) -> Receiver:
        r = Receiver(broker.host, broker.port, device_id, **kwargs).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


FAKES = Path(__file__).resolve().parents[1] / "fakes"
VENDOR_MODULES = ("picamera2", "libcamera", "picamera", "maix")


def _fakes_on_path(monkeypatch: pytest.MonkeyPatch, *dirs: Path) -> Iterator[Path]:
    import sys

    def forget() -> None:
        for name in list(sys.modules):
            if name.split(".")[0] in VENDOR_MODULES:
                del sys.modules[name]

    forget()
    for d in reversed(dirs):  # the first directory ends up first on sys.path
        monkeypatch.syspath_prepend(str(d))
    yield dirs[0]
    forget()


@pytest.fixture
def vendor_fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Put the vendor conformance fakes of today's releases (tests/fakes) first on sys.path."""
    yield from _fakes_on_path(monkeypatch, FAKES)


@pytest.fixture
def vendor_fakes_2022(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The 2022-era fakes (tests/fakes/era2022) first, today's for the modules that era does not
    replace (libcamera, maix)."""
    yield from _fakes_on_path(monkeypatch, FAKES / "era2022", FAKES)
