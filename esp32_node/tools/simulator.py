"""A simulated fleet of ESP32 camera nodes: the real node code under MicroPython, many at once.

Each node is a HostDevice (its own "flash" directory) driven by one thread: wake, let main.py
run to deep sleep, wait the requested sleep multiplied by ``time_scale`` (compressed time), wake
again. Node processes are separate, so N nodes use N short-lived MicroPython processes, never
more than N at a time.
"""

from __future__ import annotations

import io
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from camfleet.controller.device_keys import registry_keys
from camfleet.esp32_node.tools.hostdevice import HostDevice, WakeResult
from camfleet.mqtt_url import BrokerUrl
from camfleet.proto import codec
from camfleet.proto.v1 import config_pb2


@dataclass(frozen=True)
class WakeReport:
    device_id: str
    wake: int
    ended: str
    sleep_ms: int
    wall_ms: int
    #: Why the node stayed offline this wake (its own log line, e.g. "broker unreachable:
    #: [Errno 111] ECONNREFUSED"), "" when it reached the broker.
    offline: str = ""


# The node's log lines (esp32_node/node.py) when a wake cannot get online.
_OFFLINE = re.compile(r"^\[node [^\]]+\] \d+ ms: ((?:broker unreachable|wifi failed).*)$", re.M)


def offline_reason(result: WakeResult) -> str:
    found = _OFFLINE.search(result.output)
    return found.group(1) if found else ""


def scene_jpegs(seed: int, count: int = 3, size: tuple[int, int] = (640, 480)) -> list[bytes]:
    """A few different real JPEGs per device (a coloured scene with a moving box)."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        img = Image.new("RGB", size, (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
        draw = ImageDraw.Draw(img)
        x = 40 + i * 60
        draw.rectangle((x, 100, x + 120, 220), fill=(255 - i * 40, 240, 30))
        draw.text((20, 20), f"camfleet sim {seed} #{i}", fill=(0, 0, 0))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def node_config(interval_s: int, max_payload: int) -> bytes:
    cfg = config_pb2.DeviceConfig(max_payload=max_payload)
    cfg.schedule.interval_s = interval_s
    cfg.sleep.awake_window_s = 2
    cfg.camera.width, cfg.camera.height = 640, 480
    return codec.encode(cfg)


class Fleet:
    def __init__(
        self,
        broker: BrokerUrl,
        state_dir: Path,
        count: int,
        *,
        prefix: str = "sim-esp32",
        interval_s: int = 300,
        time_scale: float = 0.01,
        max_payload: int = 128 * 1024,
        keys_in: Path | None = None,
        enrol: Callable[[str], dict[str, int | bytes | str]] | None = None,
        fresh: bool = True,
    ) -> None:
        """``keys_in``: a controller's data directory; each node gets its own key in its registry
        (as ``camfleet device add`` does) and then acts only on what that controller signs.
        Without it the nodes have no key and check nothing (a development fleet).
        ``enrol(device_id)``: NVS settings of the node's own enrolment (identity, TLS, key),
        written over the shared ones (camfleet.enrol, for a prod broker)."""
        self.broker = broker
        self.time_scale = time_scale
        self.stop_event = threading.Event()
        self.devices = [
            HostDevice(state_dir / f"{prefix}-{i}", f"{prefix}-{i}") for i in range(count)
        ]
        extra: dict[str, int | bytes | str] = {"mqtt_tls": int(broker.tls)}
        if broker.username:
            extra["mqtt_user"] = broker.username
        if broker.password:
            extra["mqtt_pass"] = broker.password
        fresh_devices = [
            (i, dev)
            for i, dev in enumerate(self.devices)
            if fresh or not (dev.dir / "nvs").exists()
        ]
        hmac_keys: dict[str, bytes] = {}
        if keys_in is not None:
            with registry_keys(keys_in) as keys:
                hmac_keys = {dev.device_id: keys.create(dev.device_id) for _, dev in fresh_devices}
        for i, dev in fresh_devices:
            own = enrol(dev.device_id) if enrol is not None else {}
            dev.provision(
                broker_host=broker.host,
                broker_port=broker.port,
                jpegs=scene_jpegs(i),
                hmac_key=hmac_keys.get(dev.device_id, b""),
                config=node_config(interval_s, max_payload),
                extra_nvs={**extra, **own},
            )

    def run(self, on_wake: Callable[[WakeReport], None], max_wakes: int = 0) -> None:
        """Run every node until stop() (or each has woken ``max_wakes`` times)."""
        threads = [
            threading.Thread(target=self._loop, args=(dev, on_wake, max_wakes), daemon=True)
            for dev in self.devices
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)

    def stop(self) -> None:
        self.stop_event.set()
        for dev in self.devices:
            dev.cut_power()

    def _loop(self, dev: HostDevice, on_wake: Callable[[WakeReport], None], max_wakes: int) -> None:
        n = 0
        cause = "timer"
        while not self.stop_event.is_set() and (not max_wakes or n < max_wakes):
            started = time.monotonic()
            try:
                result: WakeResult = dev.run_wake(cause, timeout=120)
            except RuntimeError:
                if self.stop_event.is_set():
                    return
                raise
            n += 1
            wall = int((time.monotonic() - started) * 1000)
            on_wake(
                WakeReport(
                    dev.device_id, n, result.ended, result.sleep_ms, wall, offline_reason(result)
                )
            )
            if self.stop_event.is_set():
                return
            self.stop_event.wait(result.sleep_ms / 1000 * self.time_scale)
