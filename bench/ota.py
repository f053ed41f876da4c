#!/usr/bin/env python3
"""OTA benchmark: one signed image to N simulated ESP32 nodes (real MicroPython, the host port)
through the real controller (a subprocess) and mosquitto, against the same bytes published raw
in the same run, and frame ingest with and without a rollout going on.

    .venv/bin/python bench/ota.py [--nodes 20] [--size 1500000] [--blocks-per-s 400]

1. raw: one paho publisher sends the image in 4 KiB messages (QoS 1) to each of N paho
   subscribers, one topic each; wall time until every subscriber has every block, and the
   broker's bytes in + out ($SYS, sys_interval 1).
2. rollout: the N nodes (woken once to register) get a rollout of the image; every node wakes at
   the same moment, downloads, verifies (SHA-256, HMAC, then the emulated signed-app check) and
   resets into the new slot; wall time from the rollout's creation until the last reset, and
   the broker's bytes over that window.
3. ingest: a simulated device publishes 50 KB frames and waits for receipts in batches of 20,
   alone, then during a second rollout (the next version to the same nodes); frames receipted
   per second in each window.

With ``--light-nodes`` the nodes are CPython clients speaking the same block protocol (HMAC
check, windows of 8 blocks, per-block and whole-image SHA-256) instead of MicroPython
processes: on a 2-core machine twenty interpreters hashing and writing flash compete with the
controller for the CPU, which says little about what delivery costs the controller itself.

Prints the ratios rollout/raw (wall, bytes) and ingest during/alone. Machine-noise: compare the
ratios of one run, not absolute times.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from camfleet.esp32_node.tools.hostdevice import HostDevice
from camfleet.mosquitto import Mosquitto, free_port
from camfleet.proto import codec
from camfleet.proto.v1 import command_pb2, ota_pb2, state_pb2
from camfleet.testing.controller_process import ControllerProcess
from camfleet.testing.ota_images import make_key, signed_image
from camfleet.testing.sim_device import SimDevice

BLOCK = 4096
KEY = b"bench-device-key-0123456789abcdef"
TOKEN = "bench-token"


class BrokerBytes:
    """The broker's cumulative bytes received + sent, from $SYS (updated every second)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.values: dict[str, int] = {}
        self.updates = 0
        self.cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([("$SYS/broker/bytes/sent", 0), ("$SYS/broker/bytes/received", 0)])
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        with self.cond:
            self.values[msg.topic.rsplit("/", 1)[1]] = int(msg.payload)
            self.updates += 1
            self.cond.notify_all()

    def snapshot(self) -> int:
        """Bytes in + out, from the first $SYS update after this call (so nothing is missed)."""
        with self.cond:
            start = self.updates
            if not self.cond.wait_for(lambda: self.updates >= start + 2, 10):
                raise RuntimeError("no $SYS byte counters from the broker (sys_interval?)")
            return self.values["sent"] + self.values["received"]


def raw_run(broker: Mosquitto, image: bytes, nodes: int, meter: BrokerBytes) -> tuple[float, int]:
    blocks = [image[i : i + BLOCK] for i in range(0, len(image), BLOCK)]
    got = [0] * nodes
    done = threading.Event()
    lock = threading.Lock()
    subs = []
    for i in range(nodes):

        def on_message(client, userdata, msg, i=i):  # type: ignore[no-untyped-def]
            with lock:
                got[i] += 1
                if all(g == len(blocks) for g in got):
                    done.set()

        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-sub-{i}")
        c.on_message = on_message
        c.connect(broker.host, broker.port)
        c.subscribe(f"bench/raw/{i}", 1)
        c.loop_start()
        subs.append(c)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-pub")
    pub.max_inflight_messages_set(100)
    pub.max_queued_messages_set(0)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    time.sleep(0.5)  # let the SUBSCRIBEs land (bench only: tests await events instead)
    before = meter.snapshot()
    t0 = time.monotonic()
    for i in range(nodes):
        for b in blocks:
            pub.publish(f"bench/raw/{i}", b, qos=1)
    if not done.wait(600):
        raise RuntimeError(f"raw run incomplete: {got}")
    wall = time.monotonic() - t0
    used = meter.snapshot() - before
    for c in [*subs, pub]:
        c.loop_stop()
        c.disconnect()
    return wall, used


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


class Ingest:
    """A simulated device publishing frames in batches of 20, each batch waiting for receipts."""

    def __init__(self, broker: Mosquitto, size: int) -> None:
        self.dev = SimDevice(broker.host, broker.port, "bench-ingest", frame_size=size).connect()
        self.receipted: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            frames = self.dev.send_frames(20)
            keys = [(f.session, f.seq) for f in frames]
            if not self.dev.wait_receipted(keys, 120):
                raise RuntimeError("frames not receipted")
            now = time.monotonic()
            self.receipted += [now] * len(keys)
            for k in keys:
                self.dev.spool.pop(k, None)

    def rate(self, t0: float, t1: float) -> float:
        return sum(1 for t in self.receipted if t0 <= t <= t1) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--size", type=int, default=1_500_000, help="image bytes (before signing)")
    ap.add_argument("--blocks-per-s", type=float, default=400)
    ap.add_argument("--max-transfers", type=int, default=20)
    ap.add_argument("--frame-size", type=int, default=50_000)
    ap.add_argument("--light-nodes", action="store_true", help="CPython nodes (see above)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="camfleet-bench-ota-"))
    broker = Mosquitto(tmp / "mosquitto", extra_config="sys_interval 1\n")
    broker.start()
    meter = BrokerBytes(broker)
    key = make_key(tmp / "keys", "release")
    images = [
        signed_image(v, args.size, key, tmp, seed=n) for n, v in enumerate(("2.0.0", "2.0.1"))
    ]
    factory = signed_image("1.0.0", 60_000, key, tmp)
    out: dict[str, float] = {"image_bytes": len(images[0]), "nodes": args.nodes}

    raw_wall, raw_bytes = raw_run(broker, images[0], args.nodes, meter)
    out.update(raw_wall_s=raw_wall, raw_broker_bytes=raw_bytes)

    port = free_port()
    ctl = ControllerProcess(
        broker.host, broker.port, tmp / "data", "--http", f"127.0.0.1:{port}", "--token", TOKEN,
        "--ota-public-key", str(key.public), "--ota-blocks-per-s", str(args.blocks_per_s),
        "--ota-max-transfers", str(args.max_transfers), "--tick-s", "0.2",
    )  # fmt: skip
    ctl.start()
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=120,
    )
    try:
        devs: list[Any] = []
        for i in range(0 if args.light_nodes else args.nodes):
            d = HostDevice(tmp / f"node{i}", f"bench-node-{i}")
            d.provision(
                broker_host=broker.host, broker_port=broker.port, jpegs=[jpeg()], hmac_key=KEY,
                factory_image=factory, extra_nvs={"ota_max_ms": 900_000},
            )  # fmt: skip
            devs.append(d)
        if args.light_nodes:
            devs = [LightNode(broker, f"bench-node-{i}") for i in range(args.nodes)]
        else:
            wake_all(devs)
        while len(api.get("/api/v1/devices").json()["items"]) < args.nodes:
            time.sleep(0.2)
        for d in devs:
            api.put(f"/api/v1/ota/device-keys/{d.device_id}", json={"hmac_key_hex": KEY.hex()})
        arts = []
        for img in images:
            r = api.post("/api/v1/ota/artifacts", content=img)
            r.raise_for_status()
            arts.append(r.json()["id"])

        ingest = Ingest(broker, args.frame_size)
        ingest.thread.start()
        while len(ingest.receipted) < 100:  # warm up
            time.sleep(0.1)

        # 2. rollout alone (the ingest device idles: it is paused between the runs)
        ingest.stop.set()
        ingest.thread.join()
        wall, used, ends = rollout(api, arts[0], devs, meter)
        out.update(ota_wall_s=wall, ota_broker_bytes=used)
        assert set(ends) == {"hard"}, ends
        if not args.light_nodes:
            wake_all(devs)  # first boot of 2.0.0: confirmed

        # 3. ingest alone, then during a rollout of the next version
        ingest.stop.clear()
        ingest.thread = threading.Thread(target=ingest._run, daemon=True)
        ingest.thread.start()
        t0 = time.monotonic()
        time.sleep(max(wall, 10))  # an ingest window as long as a rollout
        t1 = time.monotonic()
        out["ingest_alone_fps"] = ingest.rate(t0, t1)
        t0 = time.monotonic()
        wall2, _, ends = rollout(api, arts[1], devs, None)
        t1 = time.monotonic()
        out["ingest_during_fps"] = ingest.rate(t0, t1)
        out["ota2_wall_s"] = wall2
        ingest.stop.set()
        ingest.thread.join()
        assert set(ends) == {"hard"}, ends
    finally:
        ctl.stop()
        broker.kill()
    out["wall_ratio"] = out["ota_wall_s"] / out["raw_wall_s"]
    out["bytes_ratio"] = out["ota_broker_bytes"] / out["raw_broker_bytes"]
    out["ingest_ratio"] = out["ingest_during_fps"] / out["ingest_alone_fps"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    mb = 1e6
    kind = "CPython" if args.light_nodes else "MicroPython"
    print(f"image {out['image_bytes'] / mb:.2f} MB to {args.nodes} {kind} nodes")
    print(f"raw:     {raw_wall:6.1f} s  {raw_bytes / mb:7.1f} MB through the broker")
    ota_mb = out["ota_broker_bytes"] / mb
    print(f"rollout: {out['ota_wall_s']:6.1f} s  {ota_mb:7.1f} MB through the broker")
    print(f"ratio rollout/raw: wall {out['wall_ratio']:.2f}x, bytes {out['bytes_ratio']:.3f}x")
    print(
        f"ingest: {out['ingest_alone_fps']:.1f} frames/s alone, {out['ingest_during_fps']:.1f} "
        f"during a rollout ({out['ingest_ratio']:.2f}x)"
    )


class LightNode:
    """A CPython node for the block protocol only: birth, offer (HMAC-checked), windows of 8
    blocks with per-block SHA-256, whole-image SHA-256 at the end; ``ended`` like a wake."""

    def __init__(self, broker: Mosquitto, device_id: str) -> None:
        self.device_id = device_id
        self.done = threading.Event()
        self.ended = ""
        self.offer: command_pb2.OtaOffer | None = None
        self.blocks: dict[int, bytes] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=device_id, clean_session=False,
            protocol=mqtt.MQTTv311,
        )  # fmt: skip
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        base = f"camfleet/v1/{device_id}/"
        self.client.subscribe([(base + "cmd", 1), (base + "ota/block", 1)])
        state = state_pb2.DeviceState(
            presence=state_pb2.PRESENCE_ONLINE, session=1, firmware_version="1.0.0",
            platform="esp32",
        )  # fmt: skip
        self.client.publish(base + "state", codec.encode(state), qos=1, retain=True)
        self.client.loop_start()

    def _ask(self) -> None:
        assert self.offer is not None
        total = -(-self.offer.size // BLOCK)
        first = next((i for i in range(total) if i not in self.blocks), None)
        if first is None:
            image = b"".join(self.blocks[i] for i in range(total))
            self.ended = "hard" if hashlib.sha256(image).digest() == self.offer.sha256 else "bad"
            self.done.set()
            return
        req = ota_pb2.OtaBlockRequest(
            artifact_id=self.offer.artifact_id, first_block=first, count=min(8, total - first)
        )
        self.client.publish(f"camfleet/v1/{self.device_id}/ota/request", codec.encode(req), 1)

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        if msg.topic.endswith("/cmd"):
            offer = command_pb2.Command.FromString(msg.payload).ota_offer
            if hmac.new(KEY, offer.sha256, "sha256").digest() != offer.signature:
                self.ended = "bad offer"
                self.done.set()
                return
            self.offer, self.blocks = offer, {}
            self._ask()
            return
        block = ota_pb2.OtaBlock.FromString(msg.payload)
        if hashlib.sha256(block.data).digest() == block.sha256:
            self.blocks[block.index] = block.data
        start = block.index // 8 * 8
        end = min(start + 8, block.total_blocks)
        if all(i in self.blocks for i in range(start, end)):
            self._ask()

    def arm(self) -> None:
        """Before a rollout starts: forget the previous one."""
        self.done.clear()

    def start_wake(self) -> None:
        pass  # always connected

    def wait_wake(self, timeout: float) -> str:
        return self.ended if self.done.wait(timeout) else "timeout"


def wake_all(devs: list[Any]) -> list[str]:
    for d in devs:
        d.start_wake()
    return [_ended(d.wait_wake(1200)) for d in devs]


def _ended(result: Any) -> str:
    return result if isinstance(result, str) else str(result.ended)


def rollout(
    api: httpx.Client, artifact: str, devs: list[Any], meter: BrokerBytes | None
) -> tuple[float, int, list[str]]:
    before = meter.snapshot() if meter else 0
    for d in devs:
        if isinstance(d, LightNode):
            d.arm()
    t0 = time.monotonic()
    r = api.post("/api/v1/ota/rollouts", json={"artifact": artifact, "target": "all"})
    r.raise_for_status()
    ends = wake_all(devs)
    wall = time.monotonic() - t0
    used = meter.snapshot() - before if meter else 0
    return wall, used, ends


if __name__ == "__main__":
    sys.exit(main())
