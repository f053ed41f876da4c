"""Edge agent: capture + encode + spool + publish rate and CPU per frame, synthetic camera.

    .venv/bin/python bench/edge_capture.py [--frames 60] [--sizes 640x480,1920x1080]

Two parts, each with its baseline measured in the same run:

1. JPEG encoders on one synthetic frame per size: Pillow (baseline), simplejpeg from a numpy
   array, simplejpeg from a PIL image (conversion included), PyTurboJPEG when its library loads.
2. The whole agent path against a real mosquitto with a receipt-sending subscriber in another
   process: ``EdgeAgent.capture()`` (render, encode, EXIF, fsync'd spool write) then the sender
   thread (chunking above 128 KiB, QoS 1 publish) until every frame is receipted and deleted.
   Baseline: the Pillow encoder with fsync on; variants fsync off and ``auto`` (which picks Pillow
   for the synthetic camera's PIL images, as the encoder figures say it should). CPU per frame
   is this process's CPU time (all agent threads) divided by frames; the synthetic scene's
   drawing is reported separately since a real camera does not draw.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from camfleet.edge import jpeg
from camfleet.edge.agent import EdgeAgent
from camfleet.edge.cameras.synthetic import SyntheticCamera
from camfleet.edge.config import config_from_dict
from camfleet.mosquitto import Mosquitto

RECEIVER = r"""
import sys, paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from camfleet.proto import codec
from camfleet.proto.chunking import Reassembler
from camfleet.proto.receipts import make_receipt
from camfleet.proto.topics import Kind, parse
host, port, device = sys.argv[1], int(sys.argv[2]), sys.argv[3]
reasm = Reassembler()
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-rx-" + device, clean_session=True)
def stored(frame):
    receipt = make_receipt([(frame.session, frame.seq)])
    c.publish(f"camfleet/v1/{device}/receipt", codec.encode(receipt), qos=1)
def on_message(client, userdata, msg):
    kind = parse(msg.topic).kind
    m = codec.decode(kind, msg.payload).message
    if kind == Kind.FRAME:
        stored(m)
    elif kind == Kind.CHUNK:
        f = reasm.add(device, m)
        if f is not None:
            stored(f)
def on_connect(client, *a):
    client.subscribe([(f"camfleet/v1/{device}/frame", 1), (f"camfleet/v1/{device}/chunk", 1)])
    print("ready", flush=True)
c.on_message = on_message
c.on_connect = on_connect
c.connect(host, port)
c.loop_forever()
"""


def best_ms(fn: Callable[[], object], n: int, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1000


def encoders(size: tuple[int, int], n: int, quality: int) -> list[tuple[str, float, int]]:
    cam = SyntheticCamera({"seed": 1})
    image = cam.render(size, 1, 1_700_000_000.0)
    array = np.asarray(image)
    rows = [
        (
            "Pillow (baseline)",
            best_ms(lambda: jpeg.encode(image, quality), n),
            len(jpeg.encode(image, quality)),
        )
    ]
    rows.append(
        (
            "simplejpeg from array",
            best_ms(lambda: jpeg.encode(array, quality, "simplejpeg"), n),
            len(jpeg.encode(array, quality, "simplejpeg")),
        )
    )
    rows.append(
        (
            "simplejpeg from PIL image",
            best_ms(lambda: jpeg.encode(image, quality, "simplejpeg"), n),
            0,
        )
    )
    try:
        from turbojpeg import TurboJPEG

        turbo = TurboJPEG()
        bgr = np.ascontiguousarray(array[:, :, ::-1])
        rows.append(
            (
                "PyTurboJPEG from array",
                best_ms(lambda: turbo.encode(bgr, quality=quality), n),
                len(turbo.encode(bgr, quality=quality)),
            )
        )
    except Exception as exc:  # the library is optional: say why it is missing
        print(f"  (PyTurboJPEG not measured: {str(exc).splitlines()[0]})")
    rows.append(
        (
            "synthetic scene drawing (not encoding)",
            best_ms(lambda: cam.render(size, 2, 1_700_000_000.0), n),
            0,
        )
    )
    return rows


def pipeline(
    broker: Mosquitto,
    workdir: Path,
    size: tuple[int, int],
    frames: int,
    encoder: str,
    fsync: bool,
    tag: str,
) -> dict[str, Any]:
    device = f"bench-{tag}"
    rx = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, broker.host, str(broker.port), device],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert rx.stdout is not None and rx.stdout.readline().strip() == "ready"
    config = config_from_dict(
        {
            "device": {"id": device},
            "broker": {"url": broker.url},
            "camera": {
                "backend": "synthetic",
                "width": size[0],
                "height": size[1],
                "jpeg_quality": 85,
            },
            "frames": {"encoder": encoder},
            "spool": {"fsync": fsync},
            "agent": {"state_dir": str(workdir / device), "telemetry_interval_s": 0},
        }
    )
    agent = EdgeAgent(config)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert agent.online.wait(10), "agent did not connect"
        sizes = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(frames):
            sizes.append(agent.capture().size)
        ok = agent.wait_until(lambda: agent.spool.depth == 0, 120)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    finally:
        stop.set()
        thread.join(30)
        rx.terminate()
        rx.wait(10)
    assert ok, "frames were not all receipted"
    return {
        "fps": frames / wall,
        "cpu_ms": cpu / frames * 1000,
        "kib": sum(sizes) / len(sizes) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per pipeline run")
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--encode-n", type=int, default=20, help="encodes per timing run")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    print("## JPEG encoders (quality 85), best of 3 runs")
    for size in sizes:
        print(f"{size[0]}x{size[1]}:")
        rows = encoders(size, args.encode_n, 85)  # type: ignore[arg-type]
        base = rows[0][1]
        for name, ms, nbytes in rows:
            extra = f", {nbytes / 1024:.0f} KiB" if nbytes else ""
            print(f"  {name:42s} {ms:8.2f} ms  x{base / ms:5.2f} faster{extra}")

    print("\n## Agent path: capture+encode+EXIF+spool+publish until receipted")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        try:
            for size in sizes:
                label = f"{size[0]}x{size[1]}"
                results = []
                for encoder, fsync in (("pillow", True), ("pillow", False), ("auto", True)):
                    tag = f"{size[0]}-{encoder}-{int(fsync)}"
                    r = pipeline(broker, Path(tmp), size, args.frames, encoder, fsync, tag)  # type: ignore[arg-type]
                    results.append((encoder, fsync, r))
                base = results[0][2]
                for encoder, fsync, r in results:
                    print(
                        f"  {label} {encoder:10s} fsync={'on ' if fsync else 'off'} "
                        f"{r['fps']:6.1f} frames/s ({r['fps'] / base['fps']:4.2f}x)  "
                        f"CPU {r['cpu_ms']:6.1f} ms/frame ({r['cpu_ms'] / base['cpu_ms']:4.2f}x)"
                        f"  {r['kib']:.0f} KiB/frame"
                    )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
