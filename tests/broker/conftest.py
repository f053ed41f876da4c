"""A prod-profile broker (TLS, dynamic-security identities) of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from camfleet.broker_config.profiles import ConfiguredMosquitto, init_broker
from camfleet.controller.device_keys import registry_keys
from camfleet.mosquitto import free_port


def start_prod_broker(directory: Path) -> ConfiguredMosquitto:
    """``broker init --profile prod`` into ``directory`` on free ports (every listener: brokers
    of side-by-side tests must not collide), then started."""
    init_broker(
        directory,
        "prod",
        port=free_port(),
        tls_port=free_port(),
        cert_port=free_port(),
        websockets="off",
    )
    broker = ConfiguredMosquitto(directory)
    broker.start()
    return broker


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[ConfiguredMosquitto]:
    broker = start_prod_broker(tmp_path / "broker")
    yield broker
    broker.kill()


def key_of(data: Path, device_id: str) -> bytes | None:
    """The device's key in the registry of the controller whose data directory is ``data``."""
    with registry_keys(data) as keys:
        return keys.get(device_id)
