"""The fault suite: random faults under steady load, then every captured frame stored exactly once.

Load: edge agents (in this process, synthetic camera, 4 frames/s each) and ESP32 nodes (the real
node code under MicroPython, one wake every few seconds, each capturing a frame) publish through
a TCP proxy to a real mosquitto (persistence on); the real controller runs as its own process
(``camfleet controller run``) with its data directory on a small tmpfs.

Faults, in an order and at moments drawn from a seeded generator (the seed is printed;
``CAMFLEET_CHAOS_SEED=<seed>`` replays a run, ``CAMFLEET_CHAOS_FAULTS=<n>`` changes how many):
``kill -9`` of the broker and of the controller (several times each), a network cut between the
devices and the broker (the proxy drops every connection and refuses new ones), the frame
store's filesystem filled to the last byte, and the registry locked by another process. Each
fault starts either at a random time or a random 0-50 ms after the next frame or receipt seen
on the broker (work in flight: where a misplaced commit or receipt would show), lasts a random
0-1 s, and the suite then waits for receipts to flow again and prints that recovery time.

After the faults the devices stop capturing and drain their spools; the controller is stopped
cleanly. Then, per device: every frame it captured has exactly one index row and one file whose
bytes match the row's SHA-256, or is accounted for as a spool drop the device reported; nothing
else was stored.

Which broken durability this catches (checked by breaking it on purpose, 2026-11-26): a
controller that receipts and acknowledges frames before they are durable (the writer's
"receipts and PUBACKs" step moved ahead of its commit): 3 runs of 3 failed, with frames missing
(again 3 of 3 after main's disk watermarks changed the writer).
Frames are then lost when the commit never happens (``kill -9`` while a storage fault stalls
it, or the commit failing on a full disk): the device deleted them on the receipt and the
broker will not redeliver them. Each half of that break alone is not a loss, by design, and the
suite showed it (on the writer before the watermarks): PUBACK before the commit alone passed
(the devices' spools resend what no receipt covers), receipt before the commit alone failed in
1 run of 3 (the broker redelivers what was not acknowledged, unless a broker crash lost it too).

Disk full (a 256 MiB tmpfs, mounted as root; elsewhere the fault becomes a registry lock and
the suite says so): the controller's low-space watermarks (set to 32/48 MiB for this small
filesystem) make it refuse frames without storing or receipting them, so the devices keep them
and send them again once space is back; what fails anyway on the last bytes (a commit, a frame
file) is retried or refused the same way.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from camfleet.controller.device_keys import registry_keys
from camfleet.edge.agent import EdgeAgent
from camfleet.edge.config import config_from_dict
from camfleet.esp32_node.tools.hostdevice import HostDevice
from camfleet.esp32_node.tools.simulator import node_config, scene_jpegs
from camfleet.mosquitto import Mosquitto
from camfleet.proto.v1 import config_pb2, frame_pb2
from camfleet.testing.controller_process import ControllerProcess
from tests.chaos.faults import (
    Observer,
    RegistryLock,
    SmallFilesystem,
    SpoolWatch,
    TcpProxy,
)

EDGE_AGENTS = 3
ESP32_NODES = 3
KINDS = ("broker", "controller", "network", "disk", "database")

CHAOS_KEY = b"camfleet-chaos-key"


def seed_from_env() -> int:
    value = os.environ.get("CAMFLEET_CHAOS_SEED")
    return int(value) if value else random.SystemRandom().randrange(2**32)


@dataclass
class EdgeDevice:
    agent: EdgeAgent
    thread: threading.Thread
    stop: threading.Event
    captured: list[tuple[int, int]] = field(default_factory=list)
    dropped: list[tuple[int, int]] = field(default_factory=list)


class NodeLoop:
    """One ESP32 node waking over and over (sleep compressed 100x) until told to drain: then it
    keeps waking until a wake ends with its spool empty (each wake also captures)."""

    def __init__(self, dev: HostDevice) -> None:
        self.dev = dev
        self.draining = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name=dev.device_id, daemon=True)

    def _run(self) -> None:
        try:
            while True:
                result = self.dev.run_wake(timeout=120)
                if result.ended != "deepsleep":
                    self.error = f"{self.dev.device_id}: wake ended {result.ended}\n{result.output}"
                    return
                if self.draining.is_set() and not self.dev.spool_files():
                    return
                self.draining.wait(result.sleep_ms / 1000 * 0.01)
        except Exception as exc:  # reported by the test, not lost in a thread
            self.error = f"{self.dev.device_id}: {exc!r}"


@pytest.mark.slow
@pytest.mark.parametrize("controllers", [1, 2], ids=["one-controller", "two-sharing"])
def test_random_faults_lose_and_duplicate_nothing(
    controllers: int, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """``two-sharing``: two controller processes on one data directory split the frames through
    a shared subscription (``--share-group``); a controller fault kills one of them."""
    seed = seed_from_env()
    n_faults = int(os.environ.get("CAMFLEET_CHAOS_FAULTS", "24" if controllers == 1 else "20"))
    print(
        f"\nfault suite, {controllers} controller(s): seed {seed} "
        f"(replay: CAMFLEET_CHAOS_SEED={seed}), {n_faults} faults"
    )
    rng = random.Random(seed)

    data = tmp_path / "ctl" / "data"
    fs = SmallFilesystem(data, size_mib=256)
    disk_full = SmallFilesystem.available()
    if disk_full:
        fs.mount()
    else:
        data.mkdir(parents=True)
        print("disk-full fault replaced by a registry lock: mounting a tmpfs needs root")
    proxy = TcpProxy(mosquitto.host, mosquitto.port).start()
    shared = ("--share-group", "chaos") if controllers > 1 else ()
    ctls = [
        ControllerProcess(
            mosquitto.host,
            mosquitto.port,
            data,
            *("--no-home-assistant", "--tick-s", "0.5", "--client-id", f"chaos-ctl-{i}"),
            *("--disk-low-bytes", str(32 << 20), "--disk-resume-bytes", str(48 << 20)),
            *shared,
        )
        for i in range(controllers)
    ]
    observer: Observer | None = None
    spools = SpoolWatch(tmp_path / "spool-watch")
    edges: list[EdgeDevice] = []
    nodes: list[NodeLoop] = []
    try:
        for ctl in ctls:
            ctl.start(timeout=60)
        observer = Observer(mosquitto.host, mosquitto.port)
        edges = [start_edge(tmp_path, proxy.port, f"chaos-edge-{i}") for i in range(EDGE_AGENTS)]
        nodes = [
            start_node(tmp_path, proxy.port, f"chaos-esp32-{i}", i, spools, data)
            for i in range(ESP32_NODES)
        ]
        assert observer.wait("receipts", 60) is not None, "no receipt before the faults"

        kinds = [KINDS[i % len(KINDS)] for i in range(n_faults)]
        if not disk_full:
            kinds = ["database" if k == "disk" else k for k in kinds]
        rng.shuffle(kinds)
        lock = RegistryLock(data / "registry.sqlite3")
        started = time.monotonic()
        for number, kind in enumerate(kinds, 1):
            aim = rng.choice(("time", "frames", "receipts"))
            delay = rng.uniform(0.1, 1.0) if aim == "time" else rng.uniform(0, 0.05)
            if aim != "time":
                observer.wait(aim, 10)  # whichever comes first: the frame or 10 s
            time.sleep(delay)  # the random moment itself (drawn from the seed)
            hold = rng.uniform(0, 1.0)
            crash = kind in ("disk", "database") and rng.random() < 0.5
            ctl = rng.choice(ctls)
            inject(kind, hold, crash, observer, mosquitto, ctl, proxy, fs, lock)
            recovery = observer.wait("receipts", 90)
            assert recovery is not None, (
                f"fault {number} ({kind}): no receipt within 90 s after it ended (seed {seed})"
            )
            label = f"{kind}+crash" if crash else kind
            print(
                f"fault {number:2d}/{len(kinds)} {label:16s} at {aim:8s} held {hold:.2f} s, "
                f"receipts again after {recovery:.2f} s"
            )
            for n in nodes:
                assert n.error is None, n.error
        print(f"{len(kinds)} faults in {time.monotonic() - started:.0f} s")

        # Drain: stop capturing, let every spool empty through receipts.
        for e in edges:
            e.agent.set_config(
                config_pb2.DeviceConfig(schedule=config_pb2.CaptureSchedule(interval_s=0))
            )
        for n in nodes:
            n.draining.set()
        for e in edges:
            assert e.agent.wait_until(lambda a=e.agent: a.spool.depth == 0, 120), (
                f"{e.agent.device_id}: {e.agent.spool.depth} frames never receipted (seed {seed})"
            )
        for n in nodes:
            n.thread.join(180)
            assert not n.thread.is_alive(), f"{n.dev.device_id} did not drain (seed {seed})"
            assert n.error is None, n.error
        for ctl in ctls:
            ctl.stop()  # SIGTERM: the frame files still behind the ack are written first
            assert ctl.proc is not None and ctl.proc.returncode == 0
        check_exactly_once(data, edges, nodes, spools, seed)
    finally:
        for e in edges:
            e.stop.set()
        for e in edges:
            e.thread.join(30)
            e.agent.close()
        for n in nodes:
            n.draining.set()
            n.dev.cut_power()
        if observer is not None:
            observer.close()
        spools.close()
        for ctl in ctls:
            ctl.stop()
        proxy.close()
        fs.unmount()


def inject(
    kind: str,
    hold: float,
    crash: bool,
    observer: Observer,
    broker: Mosquitto,
    ctl: ControllerProcess,
    proxy: TcpProxy,
    fs: SmallFilesystem,
    lock: RegistryLock,
) -> None:
    """One fault, held ``hold`` seconds (the outage's length is part of the drawn scenario).

    ``crash``: a storage fault (disk, database) ends with a ``kill -9`` of the controller while
    the fault still holds, once a frame has arrived during it: a controller that dies with
    work stuck behind its storage."""
    if kind == "broker":
        broker.kill()
        time.sleep(hold)
        broker.start()
    elif kind == "controller":
        ctl.kill9()
        time.sleep(hold)
        ctl.start(timeout=90)
    elif kind == "network":
        proxy.cut()
        time.sleep(hold)
        proxy.restore()
    else:
        start, end = (fs.fill, fs.free) if kind == "disk" else (lock.lock, lock.unlock)
        start()
        if crash:
            observer.wait("frames", 10)
        time.sleep(hold)
        if crash:
            ctl.kill9()
        end()
        if crash:
            ctl.start(timeout=90)


def start_edge(tmp_path: Path, port: int, device_id: str) -> EdgeDevice:
    config = config_from_dict(
        {
            "device": {"id": device_id, "board": "chaos"},
            "broker": {
                "url": f"mqtt://127.0.0.1:{port}",
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.5,
                "keepalive_s": 5,
            },
            "camera": {"backend": "synthetic", "width": 160, "height": 120},
            "schedule": {"interval_s": 0.25},
            "spool": {"fsync": True, "resend_after_s": 2},
            "agent": {"state_dir": str(tmp_path / device_id), "telemetry_interval_s": 2},
        },
        source="chaos",
    )
    agent = EdgeAgent(config)
    stop = threading.Event()
    device = EdgeDevice(agent, threading.Thread(target=agent.run, args=(stop,)), stop)
    original_put = agent.spool.put

    def put(frame: frame_pb2.Frame) -> list[object]:
        dropped = original_put(frame)  # what the device reports as spool_dropped
        device.dropped += [(k.session, k.seq) for k in dropped]
        return dropped  # type: ignore[return-value]

    agent.spool.put = put  # type: ignore[method-assign]
    agent.observers.append(lambda f, online: device.captured.append((f.session, f.seq)))
    device.thread.start()
    return device


def start_node(
    tmp_path: Path, port: int, device_id: str, seed: int, spools: SpoolWatch, data: Path
) -> NodeLoop:
    dev = HostDevice(tmp_path / device_id, device_id)
    cfg = config_pb2.DeviceConfig()
    cfg.ParseFromString(node_config(interval_s=300, max_payload=128 * 1024))
    cfg.spool_max_frames = 200  # room for every frame of the run: no drop expected
    cfg.spool_max_bytes = 16 * 1024 * 1024
    dev.provision(
        broker_host="127.0.0.1",
        broker_port=port,
        jpegs=scene_jpegs(seed),
        hmac_key=CHAOS_KEY,
        config=cfg.SerializeToString(),
    )
    # The controllers sign the node's receipts and commands with its key (a node with a key
    # refuses anything unsigned): the key goes into their registry, as `camfleet device add`.
    with registry_keys(data) as keys:
        keys.put(device_id, CHAOS_KEY)
    spools.watch(dev.dir / "fs" / "spool", device_id)  # every frame the node captures
    loop = NodeLoop(dev)
    loop.thread.start()
    return loop


def check_exactly_once(
    data: Path, edges: list[EdgeDevice], nodes: list[NodeLoop], spools: SpoolWatch, seed: int
) -> None:
    db = sqlite3.connect(data / "registry.sqlite3")
    try:
        rows = db.execute(
            "SELECT device_id, session, seq, sha256, store_key FROM frames"
        ).fetchall()
        dropped_events = {
            d: n
            for d, n in db.execute(
                "SELECT device_id, COUNT(*) FROM events WHERE type = 'spool_dropped' "
                "GROUP BY device_id"
            )
        }
    finally:
        db.close()
    by_device: dict[str, list[tuple[int, int]]] = {}
    for device_id, session, seq, sha, key in rows:
        by_device.setdefault(device_id, []).append((session, seq))
        path = data / key
        assert path.is_file(), f"{device_id} {session}-{seq}: no file {key} (seed {seed})"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, f"{key}: bytes differ"
    files = {str(p.relative_to(data)) for p in (data / "frames").rglob("*") if p.is_file()}
    assert files == {key for *_, key in rows}, "frame files without an index row"
    total = 0
    for e in edges:
        device = e.agent.device_id
        stored = by_device.get(device, [])
        assert len(stored) == len(set(stored)), f"{device}: a frame stored twice"
        missing = set(e.captured) - set(stored) - set(e.dropped)
        extra = set(stored) - set(e.captured)
        assert not missing and not extra, (
            f"{device}: missing {sorted(missing)}, unexpected {sorted(extra)} (seed {seed})"
        )
        total += len(stored)
    for n in nodes:
        device = n.dev.device_id
        stored = by_device.get(device, [])
        assert len(stored) == len(set(stored)), f"{device}: a frame stored twice"
        captured = spools.captured(device)
        assert captured, f"{device}: no capture seen in its spool"
        missing, extra = captured - set(stored), set(stored) - captured
        drops = dropped_events.get(device, 0)
        assert len(missing) == drops and not extra, (
            f"{device}: missing {sorted(missing)} ({drops} reported dropped), "
            f"unexpected {sorted(extra)} (seed {seed})"
        )
        total += len(stored)
    print(
        f"{total} frames captured and stored exactly once; spool drops reported: "
        f"{sum(len(e.dropped) for e in edges) + sum(dropped_events.values())}"
    )
