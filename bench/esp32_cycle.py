"""ESP32 node: awake time per wake cycle and bytes on the wire per frame versus JPEG size.

    .venv/bin/python bench/esp32_cycle.py [--repeat 5]

The real node code runs under the MicroPython unix port (tools/hostdevice.py, the heap limit of
the tests) against a real mosquitto, through a byte-counting TCP proxy; a test receiver sends a
receipt for every frame, so a wake ends as soon as its frames are receipted. Three kinds of wake:

- baseline: a timer wake with nothing due (connect, birth, commands, telemetry, asleep state);
- VGA: a scheduled capture of a 640x480 JPEG, one Frame message;
- UXGA: a 1600x1200 JPEG of ~380 KB (the esp32-camera UXGA buffer), sent as 128 KiB chunks.

Awake time is the node's own clock (ticks_ms from boot of main.py to deepsleep), which is what
drains a battery; wire bytes are every byte the node sent to the broker in that wake (MQTT
framing, protobuf, birth/telemetry/state included), so bytes minus JPEG is the protocol cost.
"""

from __future__ import annotations

import argparse
import io
import random
import re
import socket
import statistics
import tempfile
import threading
from pathlib import Path

from PIL import Image

from camfleet.esp32_node.tools.hostdevice import HostDevice
from camfleet.mosquitto import Mosquitto, free_port
from camfleet.proto import codec
from camfleet.proto.v1 import config_pb2
from camfleet.testing.esp32_receiver import Receiver


class CountingProxy:
    """TCP proxy that counts the bytes clients send upstream."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.sent = 0
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            broker = socket.create_connection(self.upstream)
            for s in (client, broker):  # forward at once, as the endpoints themselves do
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(client, broker, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(broker, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                if count:
                    with self.lock:
                        self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def take(self) -> int:
        with self.lock:
            n, self.sent = self.sent, 0
            return n


def jpeg(width: int, height: int, noise: bool) -> bytes:
    if noise:
        img = Image.frombytes(
            "RGB", (width, height), random.Random(1).randbytes(width * height * 3)
        )
    else:
        img = Image.new("RGB", (width, height), (90, 140, 200))
        for i in range(0, width, 40):
            img.paste((i % 255, 80, 160), (i, 0, i + 20, height))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def config(width: int, height: int, interval: int) -> bytes:
    cfg = config_pb2.DeviceConfig()
    cfg.camera.width, cfg.camera.height = width, height
    cfg.schedule.interval_s = interval
    cfg.sleep.max_sleep_s = 3600
    cfg.sleep.awake_window_s = 5
    return codec.encode(cfg)


def measure(
    work: Path,
    broker: Mosquitto,
    proxy: CountingProxy,
    name: str,
    repeat: int,
    width: int,
    height: int,
    data: bytes,
    capture: bool,
) -> dict[str, float]:
    dev = HostDevice(work / name, f"bench-{name}")
    dev.provision(
        broker_host="127.0.0.1",
        broker_port=proxy.port,
        jpegs={f"{width}x{height}": [data]},
        config=config(width, height, 60 if capture else 0),
    )
    rx = Receiver(broker.host, broker.port, dev.device_id).start()
    awake, wire = [], []
    try:
        dev.run_wake()  # power-on wake (always captures): not measured
        proxy.take()
        for _ in range(repeat):
            result = dev.run_wake("timer")
            m = re.search(r"awake (\d+) ms", result.output)
            assert m and result.ended == "deepsleep", result.output
            awake.append(int(m.group(1)))
            wire.append(proxy.take())
        frames = len(rx.frames)
        assert frames == 1 + (repeat if capture else 0), f"{name}: {frames} frames stored"
        assert not rx.errors, rx.errors
    finally:
        rx.close()
    return {"awake_ms": statistics.median(awake), "wire": statistics.median(wire)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto")
        broker.start()
        proxy = CountingProxy((broker.host, broker.port))
        try:
            vga = jpeg(640, 480, noise=False)
            uxga = jpeg(1600, 1200, noise=True)[:380_000]
            base = measure(work, broker, proxy, "baseline", args.repeat, 640, 480, vga, False)
            rows = [("baseline: wake, nothing due", base, 0)]
            for name, (w, h, data) in {"vga": (640, 480, vga), "uxga": (1600, 1200, uxga)}.items():
                r = measure(work, broker, proxy, name, args.repeat, w, h, data, True)
                rows.append((f"capture {w}x{h}, {len(data)} B JPEG", r, len(data)))
        finally:
            broker.kill()
    print(f"median of {args.repeat} wakes each (node clock; bytes node -> broker)")
    head = ("wake", "awake ms", "x base", "wire B", "wire-JPEG B", "wire/JPEG")
    print(f"{head[0]:38} {head[1]:>9} {head[2]:>7} {head[3]:>9} {head[4]:>11} {head[5]:>9}")
    for label, r, size in rows:
        ratio = r["awake_ms"] / base["awake_ms"]
        extra = r["wire"] - size
        per = f"{r['wire'] / size:.3f}" if size else "-"
        print(
            f"{label:38} {r['awake_ms']:9.0f} {ratio:7.2f} {r['wire']:9.0f} {extra:11.0f} {per:>9}"
        )


if __name__ == "__main__":
    main()
