"""Fixtures of the ESP32 node tests: a provisioned host device, real JPEGs, the test receiver."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from camfleet.esp32_node.tools.hostdevice import HostDevice
from camfleet.mosquitto import Mosquitto
from camfleet.proto import codec
from camfleet.proto.v1 import config_pb2
from camfleet.testing.esp32_receiver import Receiver

DEVICE_KEY = b"device-key-for-tests-0123456789a"
_ids = itertools.count(1)


def jpeg(
    width: int = 640, height: int = 480, seed: int = 0, quality: int = 85, noise: bool = False
) -> bytes:
    """A real JPEG; ``noise`` makes it large (incompressible), as a busy scene does."""
    if noise:
        img = Image.frombytes("RGB", (width, height), _noise(width * height * 3, seed))
    else:
        img = Image.new("RGB", (width, height), (seed * 40 % 256, 120, 200))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _noise(n: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def node_config(**overrides: object) -> bytes:
    """Encoded DeviceConfig for provisioning: short awake window so tests stay fast."""
    cfg = config_pb2.DeviceConfig()
    cfg.sleep.awake_window_s = 2
    cfg.camera.width = 640
    cfg.camera.height = 480
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return codec.encode(cfg)


@pytest.fixture
def make_device(tmp_path: Path) -> Callable[..., HostDevice]:
    made: list[HostDevice] = []

    def make(broker: Mosquitto, config: bytes | None = None, **kwargs: object) -> HostDevice:
        dev = HostDevice(tmp_path / f"dev{len(made)}", f"cam-{next(_ids)}")
        kwargs.setdefault("jpegs", [jpeg(seed=1), jpeg(seed=2)])
        kwargs.setdefault("hmac_key", DEVICE_KEY)
        dev.provision(
            broker_host=broker.host,
            broker_port=broker.port,
            config=node_config() if config is None else config,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.cut_power()


@pytest.fixture
def receiver_for() -> Iterator[Callable[[Mosquitto, HostDevice], Receiver]]:
    started: list[Receiver] = []

    def start(broker: Mosquitto, dev: HostDevice) -> Receiver:
        r = Receiver(broker.host, broker.port, dev.device_id, device_key=DEVICE_KEY).start()
        started.append(r)
        return r

    yield start
    for r in started:
        try:
            r.close()
        except Exception:
            pass
