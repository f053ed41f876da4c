#!/usr/bin/env python3
"""Ingest benchmark: N simulated devices -> mosquitto -> controller with durable storage, next to
a raw paho subscriber that stores nothing, on the same broker in the same run.

    .venv/bin/python bench/ingest.py [--publishers 4] [--frames 1000] [--size 50000]
                                     [--controllers 2]

Each publisher is a process running SimDevice (camfleet/testing/sim_device.py): it publishes
its frames at QoS 1 as fast as paho lets it and, in the controller run, waits for the receipts.
Reported per run: frames/s and MB/s (first publish -> last frame received (raw) or receipted
(controller)), p50/p99 latency (publish -> received / publish -> receipt, i.e. durably stored and
confirmed to the device), consumer CPU per frame, and the controller's own stage timers (a
profile of where its time goes). Prints the ratio controller/raw.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.mosquitto import Mosquitto, free_port
from camfleet.proto import topics
from camfleet.proto.v1 import frame_pb2
from camfleet.testing.controller_process import ControllerProcess
from camfleet.testing.sim_device import SimDevice, fake_jpeg

Key = tuple[str, int, int]


def publisher(
    host: str,
    port: int,
    device_id: str,
    frames: int,
    size: int,
    qos: int,
    go: mp.Event,
    wait_receipts: bool,
    out: mp.Queue,  # type: ignore[type-arg]
) -> None:
    dev = SimDevice(host, port, device_id).connect()
    blobs = [fake_jpeg(size, seed=i) for i in range(16)]
    prepared = [dev.make_frame(data=blobs[i % 16]) for i in range(frames)]
    go.wait()
    infos = [dev.publish_frame(f, qos) for f in prepared]
    for info in infos:
        info.wait_for_publish(120)
    ok = dev.wait_receipted(timeout=300) if wait_receipts else True
    out.put((device_id, ok, dict(dev.sent_times), dict(dev.receipt_times)))
    dev.disconnect()


def raw_subscriber(
    host: str,
    port: int,
    total: int,
    ready: mp.Event,
    out: mp.Queue,  # type: ignore[type-arg]
) -> None:
    """A plain paho QoS 1 subscriber: reads each frame's header, stores nothing."""
    received: dict[Key, float] = {}
    done = threading.Event()

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        frame = frame_pb2.Frame.FromString(msg.payload)
        device = msg.topic.split("/")[2]
        received[(device, frame.session, frame.seq)] = time.time()
        if len(received) >= total:
            done.set()

    def on_connect(client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        client.subscribe(topics.device_filter(topics.Kind.FRAME), 1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw")
    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *a: ready.set()
    client.connect(host, port)
    client.loop_start()
    cpu0 = time.process_time()
    done.wait(300)
    cpu = time.process_time() - cpu0
    client.loop_stop()
    out.put((received, cpu))


def run_publishers(
    broker: Mosquitto, args: argparse.Namespace, tag: str, wait_receipts: bool
) -> tuple[dict[Key, float], dict[Key, float], bool]:
    go, out = mp.Event(), mp.Queue()
    procs = [
        mp.Process(
            target=publisher,
            args=(
                broker.host,
                broker.port,
                f"bench-{tag}-{i}",
                args.frames,
                args.size,
                args.qos,
                go,
                wait_receipts,
                out,
            ),
        )
        for i in range(args.publishers)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every publisher connect and prepare its frames
    go.set()
    sent: dict[Key, float] = {}
    receipts: dict[Key, float] = {}
    all_ok = True
    for _ in procs:
        device_id, ok, s, r = out.get(timeout=600)
        all_ok &= ok
        sent.update({(device_id, *k): t for k, t in s.items()})
        receipts.update({(device_id, *k): t for k, t in r.items()})
    for p in procs:
        p.join()
    return sent, receipts, all_ok


def summarize(
    name: str, sent: dict[Key, float], done: dict[Key, float], size: int, cpu_s: float
) -> dict[str, float]:
    keys = [k for k in sent if k in done]
    start, end = min(sent.values()), max(done[k] for k in keys)
    lat = sorted((done[k] - sent[k]) * 1000 for k in keys)
    fps = len(keys) / (end - start)
    result = {
        "frames": len(keys),
        "missing": len(sent) - len(keys),
        "fps": fps,
        "mbps": fps * size / 1e6,
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "cpu_us": cpu_s / max(len(keys), 1) * 1e6,
    }
    print(
        f"{name:<11} {result['frames']:>7} frames ({result['missing']} missing)  "
        f"{fps:>8.0f} frames/s  {result['mbps']:>7.1f} MB/s  p50 {result['p50']:>7.1f} ms  "
        f"p99 {result['p99']:>7.1f} ms  consumer CPU {result['cpu_us']:>6.0f} us/frame"
    )
    return result


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_controller(
    broker: Mosquitto, data: Path, http_port: int, extra: list[str]
) -> subprocess.Popen[bytes]:
    """The controller as the tests run it (a subprocess, ready once its presence says ONLINE)."""
    ctl = ControllerProcess(
        broker.host,
        broker.port,
        data,
        *("--http", f"127.0.0.1:{http_port}", "--token", "bench", "--log-level", "warning"),
        *extra,
    )
    try:
        ctl.start(timeout=30)
    except TimeoutError:
        ctl.stop()
        raise SystemExit("controller did not start") from None
    assert ctl.proc is not None
    return ctl.proc


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--frames", type=int, default=1000, help="per publisher")
    ap.add_argument("--size", type=int, default=50_000, help="JPEG bytes per frame")
    ap.add_argument("--qos", type=int, default=1, choices=(0, 1))
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    ap.add_argument(
        "--controller-arg",
        action="append",
        default=[],
        help="extra option for `camfleet controller run` (repeatable), e.g. --mqtt-protocol=3.1.1",
    )
    ap.add_argument(
        "--controllers",
        type=int,
        default=1,
        help="controller processes sharing the frames through $share (scale-out)",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="sample the controller with py-spy into this file (collapsed stacks) and summarize",
    )
    args = ap.parse_args()
    total = args.publishers * args.frames
    with tempfile.TemporaryDirectory(prefix="camfleet-bench-") as tmp:
        work = args.workdir or Path(tmp)
        broker = Mosquitto(work / "broker")
        broker.start()
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(work)], capture_output=True, text=True)
        print(
            f"{args.publishers} publishers x {args.frames} frames of {args.size} B at QoS "
            f"{args.qos}; broker {broker.url}; data on {fs.stdout.strip() or '?'} ({work}); "
            f"{os.cpu_count()} CPUs"
        )
        try:
            # 1. raw paho subscriber, stores nothing
            ready, out = mp.Event(), mp.Queue()
            sub = mp.Process(
                target=raw_subscriber, args=(broker.host, broker.port, total, ready, out)
            )
            sub.start()
            ready.wait(10)
            sent, _, _ = run_publishers(broker, args, "raw", wait_receipts=False)
            received, raw_cpu = out.get(timeout=600)
            sub.join()
            raw = summarize("raw paho", sent, received, args.size, raw_cpu)

            # 2. the controller(s), durable storage, receipts back to the devices. Several
            # share the frames through a shared subscription, one registry and one data
            # directory, each with its own client id (docs/controller.md, Scale-out).
            ports = [free_port() for _ in range(args.controllers)]
            ctls = [
                start_controller(
                    broker,
                    work / "controller-data",
                    port,
                    [*args.controller_arg, *_sharing_args(i, args.controllers)],
                )
                for i, port in enumerate(ports)
            ]

            def scrape() -> list[str]:
                return [httpx.get(f"http://127.0.0.1:{port}/metrics").text for port in ports]

            def cpu() -> float:
                return sum(proc_cpu_s(c.pid) for c in ctls)

            spy = _start_profiler(ctls[0].pid, args.profile) if args.profile else None
            threads0 = _sum_threads(scrape())
            cpu0, broker0, sys0 = cpu(), _broker_cpu(broker), _system_cpu()
            sent, receipts, ok = run_publishers(broker, args, "ctl", wait_receipts=True)
            ctl_cpu = cpu() - cpu0
            broker_cpu = _broker_cpu(broker) - broker0
            system = {k: v - sys0[k] for k, v in _system_cpu().items()}
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            # The browsable files are written behind the frame log: time until they all exist.
            files_started = time.time()
            files_cpu0 = cpu()
            while any(
                _metric(text, "camfleet_controller_frame_files_pending") for text in scrape()
            ):
                time.sleep(0.05)
            files_after = time.time() - max(receipts.values())
            files_wait = time.time() - files_started
            files_cpu = cpu() - files_cpu0
            texts = scrape()
            metrics = texts[0]
            threads = {k: v - threads0.get(k, 0.0) for k, v in _sum_threads(texts).items()}
            for ctl in ctls:
                ctl.terminate()
            for ctl in ctls:
                ctl.wait(30)
            name = "controller" if len(ctls) == 1 else f"{len(ctls)} ctls"
            res = summarize(name, sent, receipts, args.size, ctl_cpu)
        finally:
            broker.kill()
    stored = sum(_metric(t, "camfleet_controller_frames_stored_total") for t in texts)
    batches = sum(_metric(t, "camfleet_controller_writer_batches_total") for t in texts)
    if len(texts) > 1:
        print(
            "frames stored by each controller: "
            + ", ".join(
                f"{_metric(t, 'camfleet_controller_frames_stored_total'):.0f}" for t in texts
            )
            + " (stages and profile below: the first controller)"
        )
    print(
        f"controller stored {stored:.0f} frames in {batches:.0f} group commits "
        f"(avg {stored / max(batches, 1):.1f} frames/commit); all receipted: {ok}"
    )
    n = max(stored, 1)
    receipted_in = max(receipts.values()) - min(sent.values())
    print(
        f"frame files: all written {files_after:.2f} s after the last receipt (waited "
        f"{files_wait:.2f} s, controller CPU meanwhile {files_cpu / n * 1e6:.0f} us/frame); "
        f"throughput counting that wait: {stored / (receipted_in + files_wait):.0f} frames/s"
    )
    print(
        f"CPU per stored frame: broker {broker_cpu / n * 1e6:.0f} us; whole machine during the "
        f"controller run: user {system['user'] / n * 1e6:.0f} us, system "
        f"{system['system'] / n * 1e6:.0f} us, softirq {system['softirq'] / n * 1e6:.0f} us, "
        f"iowait {system['iowait'] / n * 1e6:.0f} us, idle {system['idle'] / n * 1e6:.0f} us"
    )
    print("controller CPU by thread (us/frame):")
    for name, seconds in sorted(threads.items(), key=lambda kv: -kv[1]):
        if seconds > 0:
            print(f"  {name:<32} {seconds / n * 1e6:7.0f}")
    print("controller stages (wall s summed over threads; us/frame wall / thread CPU):")
    cpu_stages = _stages(metrics, "stage_cpu_seconds_total")
    for stage, seconds in sorted(_stages(metrics).items(), key=lambda kv: -kv[1]):
        cpu = cpu_stages.get(stage)
        print(
            f"  {stage:<26} {seconds:8.3f} s  {seconds / n * 1e6:7.0f} us"
            + (f" / {cpu / n * 1e6:5.0f} us CPU" if cpu is not None else "")
        )
    if args.profile:
        _summarize_profile(args.profile)
    print(f"ratio controller/raw (frames/s): {res['fps'] / raw['fps']:.2f}")


def _start_profiler(pid: int, out: Path, idle: bool = False) -> subprocess.Popen[bytes]:
    """py-spy on ``pid``; ``idle``: also sample threads that wait (wall time, not CPU)."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(spy),
            "record",
            *(["--idle"] if idle else []),
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "250",
            "--threads",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _summarize_profile(path: Path, top: int = 18) -> None:
    """Self time by function and total time by thread, from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        threads[frames[0]] = threads.get(frames[0], 0) + n
        leaf = re.sub(r" \(.*?/(site-packages|lib/python3\.\d+)/", " (", frames[-1])
        own[leaf] = own.get(leaf, 0) + n
    print(f"profile ({total} samples, py-spy, idle excluded) by thread:")
    for name, n in sorted(threads.items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {n / total:6.1%}  {name}")
    print("top functions by own time:")
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {n / total:6.1%}  {name[:110]}")


def _thread_cpu(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for m in re.finditer(
        r'^camfleet_controller_thread_cpu_seconds\{thread="([^"]+)"\} ([0-9.e+-]+)$', text, re.M
    ):
        name = "paho network" if m.group(1).startswith("paho-mqtt") else m.group(1)
        found[name] = found.get(name, 0.0) + float(m.group(2))
    return found


def _sharing_args(index: int, count: int) -> list[str]:
    if count == 1:
        return []
    return ["--share-group", "bench", "--client-id", f"bench-controller-{index}"]


def _sum_threads(texts: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for text in texts:
        for name, seconds in _thread_cpu(text).items():
            out[name] = out.get(name, 0.0) + seconds
    return out


def _broker_cpu(broker: Mosquitto) -> float:
    return proc_cpu_s(broker.proc.pid) if broker.proc is not None else 0.0


def _system_cpu() -> dict[str, float]:
    """Whole-machine CPU seconds by mode, from /proc/stat (all cores summed)."""
    values = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    tick = os.sysconf("SC_CLK_TCK")
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {name: int(v) / tick for name, v in zip(names, values, strict=False)}


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _stages(text: str, name: str = "stage_seconds_total") -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            rf'^camfleet_controller_{name}\{{stage="([^"]+)"\}} ([0-9.e+-]+)$', text, re.M
        )
    }


if __name__ == "__main__":
    main()
