#!/usr/bin/env python3
"""Scale benchmark: N devices on one controller, next to a raw paho subscriber of the same traffic.

    bench/scale --devices 1000 [--json] [--rest-s 20] [--telemetry-s 60] [--profile FILE]

The devices are asyncio MQTT 3.1.1 clients (a minimal client below: one event loop per worker
process, at most ``--per-process`` devices each, no thread per device), each with a persistent
session (clean_session=0, stable client id), a will, a birth (in group ``scale``), telemetry
every ``--telemetry-s`` (jittered), and the behaviour of a camera on a group capture: PUBACK the
command, publish a 2 KB frame (QoS 1) and an ack DONE, wait for the receipt. The broker is a
real mosquitto whose open-file limit is raised for the N connections; the controller is
``camfleet controller run`` in its own process, with its HTTP API.

Measured, in this order, in one run:
- births: time from the first connect until the API lists all N devices;
- at rest (``--rest-s``): controller CPU per device per minute and RSS, and the same CPU for a
  raw paho subscriber that receives the same traffic (``camfleet/v1/#``) and stores nothing;
- registry queries at N: ``GET /api/v1/devices`` and ``camfleet devices --json`` (wall time);
- a group capture (``POST /api/v1/commands`` with ``group: scale``): for each device, time
  from the POST until its frame's receipt came back (acked and durably stored), p50/p99, next
  to the time the raw subscriber saw that device's frame (the transport alone);
- the controller's peak RSS and thread count over the whole run.

With ``--json`` the last line is one JSON object (keys in ``RESULT_KEYS``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import (
    _metric,
    _stages,
    _start_profiler,
    _summarize_profile,
    _thread_cpu,
    proc_cpu_s,
)

from camfleet.mosquitto import Mosquitto, free_port
from camfleet.proto import codec, topics
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, frame_pb2, state_pb2, telemetry_pb2
from camfleet.testing.controller_process import ControllerProcess
from camfleet.testing.sim_device import fake_jpeg

GROUP = "scale"
TOKEN = "bench"
RESULT_KEYS = (
    "devices",
    "connected",
    "births_registered_s",
    "group_capture_acked",
    "group_capture_p50_s",
    "group_capture_p99_s",
    "raw_group_capture_p99_s",
    "group_command_answered_s",
    "group_capture_cpu_ms_per_device",
    "controller_rss_mib",
    "controller_rss_rest_mib",
    "controller_threads_peak",
    "controller_cpu_ms_per_device_min",
    "raw_cpu_ms_per_device_min",
    "api_devices_s",
    "cli_devices_s",
)


# --- a minimal asyncio MQTT 3.1.1 client: what a device needs, nothing more ------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


class Device:
    def __init__(self, index: int, host: str, port: int, telemetry_s: float) -> None:
        self.id = f"scale-{index:05d}"
        self.host, self.port, self.telemetry_s = host, port, telemetry_s
        self.session = 1
        self.seq = 0
        self.mid = 0
        self.writer: asyncio.StreamWriter | None = None
        self.birth_acked = asyncio.Event()
        self.birth_mid = 0
        self.frame_seq = 0
        self.command_at = 0.0
        self.receipt_at = 0.0

    def _next_mid(self) -> int:
        self.mid = self.mid % 65535 + 1
        return self.mid

    def publish(self, kind: Kind, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        assert self.writer is not None
        topic = _str(topics.device_topic(self.id, kind))
        mid = self._next_mid() if qos else 0
        body = topic + (struct.pack("!H", mid) if qos else b"") + payload
        self.writer.write(_packet(0x30 | qos << 1 | int(retain), body))
        return mid

    def _state(self, presence: int) -> bytes:
        return codec.encode(
            state_pb2.DeviceState(
                presence=presence,  # type: ignore[arg-type]
                session=self.session,
                timestamp_ms=int(time.time() * 1000),
                firmware_version="1.0.0",
                platform="sim",
                board="scale-bench",
                capabilities=["jpeg"],
                groups=[GROUP],
            )
        )

    async def run(self, connect_gate: asyncio.Semaphore) -> None:
        async with connect_gate:
            reader, self.writer = await asyncio.open_connection(self.host, self.port)
            will_topic = topics.device_topic(self.id, Kind.STATE)
            flags = 0x04 | 0x08 | 0x20  # will, will QoS 1, will retain; clean_session = 0
            body = (
                _str("MQTT")
                + bytes([4, flags])
                + struct.pack("!H", 120)
                + _str(f"sim-{self.id}")
                + _str(will_topic)
                + _str(self._state(state_pb2.PRESENCE_OFFLINE))
            )
            self.writer.write(_packet(0x10, body))
            await self._read(reader)  # CONNACK
            subs = b"".join(_str(f) + b"\x01" for f in topics.device_filters(self.id, (GROUP,)))
            self.writer.write(_packet(0x82, struct.pack("!H", self._next_mid()) + subs))
            self.birth_mid = self.publish(
                Kind.STATE, self._state(state_pb2.PRESENCE_ONLINE), retain=True
            )
        tasks = [asyncio.create_task(self._keepalive())]
        if self.telemetry_s > 0:
            tasks.append(asyncio.create_task(self._telemetry()))
        try:
            while True:
                await self._read(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for t in tasks:
                t.cancel()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        first = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        body = await reader.readexactly(length) if length else b""
        kind = first >> 4
        if kind == 3:  # PUBLISH
            qos = (first >> 1) & 3
            tlen = struct.unpack_from("!H", body)[0]
            topic = body[2 : 2 + tlen].decode()
            pos = 2 + tlen
            if qos:
                assert self.writer is not None
                self.writer.write(_packet(0x40, body[pos : pos + 2]))
                pos += 2
            self._message(topic, body[pos:])
        elif kind == 4 and struct.unpack("!H", body)[0] == self.birth_mid:  # PUBACK
            self.birth_acked.set()

    def _message(self, topic: str, payload: bytes) -> None:
        kind = topic.rsplit("/", 1)[1]
        if kind == "cmd":
            cmd = command_pb2.Command.FromString(payload)
            if cmd.WhichOneof("action") != "capture":
                return
            self.command_at = time.time()
            self.seq += 1
            self.frame_seq = self.seq
            frame = codec.make_frame(
                fake_jpeg(2048, seed=self.seq),
                session=self.session,
                seq=self.seq,
                captured_at_ms=int(time.time() * 1000),
                command_id=cmd.id,
            )
            self.publish(Kind.FRAME, codec.encode(frame))
            ack = command_pb2.Ack(
                command_id=cmd.id,
                status=command_pb2.ACK_STATUS_DONE,
                timestamp_ms=int(time.time() * 1000),
                session=self.session,
                capture_ids=[frame.capture_id],
            )
            self.publish(Kind.ACK, codec.encode(ack))
        elif kind == "receipt":
            receipt = frame_pb2.Receipt.FromString(payload)
            for r in receipt.stored:
                if r.session == self.session and r.first_seq <= self.frame_seq <= r.last_seq:
                    self.receipt_at = self.receipt_at or time.time()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(60)
            assert self.writer is not None
            self.writer.write(b"\xc0\x00")

    async def _telemetry(self) -> None:
        await asyncio.sleep(random.uniform(0, self.telemetry_s))
        while True:
            t = telemetry_pb2.Telemetry(
                timestamp_ms=int(time.time() * 1000),
                session=self.session,
                uptime_ms=1000,
                rssi_dbm=-60,
                battery_mv=3900,
            )
            self.publish(Kind.TELEMETRY, codec.encode(t), qos=0)
            await asyncio.sleep(self.telemetry_s * random.uniform(0.9, 1.1))


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker(
    first: int,
    count: int,
    host: str,
    port: int,
    telemetry_s: float,
    control: Any,
    out: Any,
) -> None:
    """One process, one event loop, ``count`` devices. Answers "report" with their timings."""
    _raise_nofile()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(50)
        devices = [Device(first + i, host, port, telemetry_s) for i in range(count)]
        tasks = [asyncio.create_task(d.run(gate)) for d in devices]
        await asyncio.gather(*(d.birth_acked.wait() for d in devices))
        out.put(("connected", count))
        while True:
            msg = await loop.run_in_executor(None, control.get)
            if msg == "stop":
                break
            out.put(("report", [(d.id, d.command_at, d.receipt_at) for d in devices]))
        for t in tasks:
            t.cancel()

    asyncio.run(main())


def raw_subscriber(host: str, port: int, control: Any, out: Any) -> None:
    """A plain paho QoS 1 subscriber of the same traffic; notes when each device's frame came."""
    frames: dict[str, float] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="scale-raw", clean_session=True)

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        if msg.topic.endswith("/frame"):
            frames[msg.topic.split("/")[2]] = time.time()

    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe(f"{topics.DEFAULT_ROOT}/v1/#", 1)
    client.connect(host, port)
    client.loop_start()
    while control.get() != "stop":
        out.put(dict(frames))
    client.loop_stop()


# --- measurement ---------------------------------------------------------------------------


def status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            values[key] = int(value.split()[0])
    return values


class Peak(threading.Thread):
    """Samples a process's RSS and thread count every 0.2 s; keeps the peaks."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.rss_kib, self.threads = pid, 0, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            try:
                s = status(self.pid)
            except OSError:
                return
            self.rss_kib = max(self.rss_kib, s["VmRSS"])
            self.threads = max(self.threads, s["Threads"])


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def say(text: str) -> None:
    print(text, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--per-process", type=int, default=1000)
    ap.add_argument("--telemetry-s", type=float, default=60.0)
    ap.add_argument("--rest-s", type=float, default=20.0)
    ap.add_argument("--timeout-s", type=float, default=300.0)
    ap.add_argument(
        "--profile", type=Path, help="py-spy raw profile of the controller during the group capture"
    )
    ap.add_argument(
        "--profile-idle", action="store_true", help="profile waiting threads too (wall time)"
    )
    ap.add_argument("--controller-arg", action="append", default=[])
    ap.add_argument("--controller-env", action="append", default=[], help="NAME=VALUE")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = ap.parse_args()
    n = args.devices
    _raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="camfleet-scale-"))
    broker = Mosquitto(work / "broker", max_open_files=n + 2048)
    broker.start()
    http_port = free_port()
    ctl = ControllerProcess(
        broker.host,
        broker.port,
        work / "data",
        *("--http", f"127.0.0.1:{http_port}", "--token", TOKEN, "--log-level", "warning"),
        *args.controller_arg,
        **dict(e.split("=", 1) for e in args.controller_env),
    )
    ctl.start(timeout=60)
    assert ctl.proc is not None
    pid = ctl.proc.pid
    peak = Peak(pid)
    peak.start()
    spy = None
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=120,
    )
    out: Any = mp.Queue()
    raw_control: Any = mp.Queue()
    raw_out: Any = mp.Queue()
    raw = mp.Process(target=raw_subscriber, args=(broker.host, broker.port, raw_control, raw_out))
    raw.start()
    result: dict[str, Any] = {"devices": n}
    workers = []
    try:
        t0 = time.monotonic()
        for first in range(0, n, args.per_process):
            control: Any = mp.Queue()
            count = min(args.per_process, n - first)
            p = mp.Process(
                target=worker,
                args=(first, count, broker.host, broker.port, args.telemetry_s, control, out),
            )
            p.start()
            workers.append((p, control))
        connected = 0
        deadline = time.monotonic() + args.timeout_s
        while connected < n and time.monotonic() < deadline:
            try:
                _, value = out.get(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                break  # reported below: fewer than N connected
            connected += value
        result["connected"] = connected
        say(f"{connected} devices connected with births in {time.monotonic() - t0:.1f} s")
        registered = 0
        while time.monotonic() < deadline:
            registered = int(api.get("/api/v1/devices").json()["count"])
            if registered >= n:
                break
            time.sleep(1)
        result["births_registered_s"] = round(time.monotonic() - t0, 2)
        say(f"{registered} devices registered after {result['births_registered_s']} s")

        # At rest: telemetry only.
        cpu0, raw0, w0 = proc_cpu_s(pid), proc_cpu_s(raw.pid or 0), time.monotonic()
        time.sleep(args.rest_s)
        minutes = (time.monotonic() - w0) / 60
        cpu_ms = (proc_cpu_s(pid) - cpu0) * 1000
        raw_ms = (proc_cpu_s(raw.pid or 0) - raw0) * 1000
        rest = status(pid)
        result["controller_cpu_ms_per_device_min"] = round(cpu_ms / n / minutes, 3)
        result["raw_cpu_ms_per_device_min"] = round(raw_ms / n / minutes, 3)
        result["controller_rss_rest_mib"] = round(rest["VmRSS"] / 1024, 1)
        say(
            f"at rest: controller {result['controller_cpu_ms_per_device_min']} ms CPU per device "
            f"per minute (raw subscriber {result['raw_cpu_ms_per_device_min']}), "
            f"RSS {result['controller_rss_rest_mib']} MiB, {rest['Threads']} threads",
        )

        # Registry queries at N.
        api_times = []
        for _ in range(5):
            started = time.monotonic()
            api.get("/api/v1/devices").raise_for_status()
            api_times.append(time.monotonic() - started)
        cli_times = []
        for _ in range(3):
            started = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "camfleet", "devices", "--json"],
                env=dict(os.environ, CAMFLEET_API=f"http://127.0.0.1:{http_port}"),
                check=True,
                capture_output=True,
            )
            cli_times.append(time.monotonic() - started)
        result["api_devices_s"] = round(statistics.median(api_times), 3)
        result["cli_devices_s"] = round(statistics.median(cli_times), 3)
        say(
            f"registry at N: GET /api/v1/devices {result['api_devices_s']} s, "
            f"camfleet devices --json {result['cli_devices_s']} s (medians)",
        )

        # A group capture (the profile, if asked for, covers it alone).
        if args.profile:
            spy = _start_profiler(pid, args.profile, idle=args.profile_idle)
            time.sleep(1)  # py-spy attaches
        capture_cpu0 = proc_cpu_s(pid)
        posted = time.time()
        api.post(
            "/api/v1/commands", json={"action": "capture", "group": GROUP, "expires_in_s": 600}
        ).raise_for_status()
        result["group_command_answered_s"] = round(time.time() - posted, 3)
        say(f"group command: API answered in {result['group_command_answered_s']} s")
        latencies: list[float] = []
        cap_deadline = time.monotonic() + args.timeout_s
        while time.monotonic() < cap_deadline:
            rows = []
            for _, control in workers:
                control.put("report")
            for _ in workers:
                _, value = out.get(timeout=60)
                rows += value
            latencies = [r - posted for _, _, r in rows if r >= posted]
            delivered = [c - posted for _, c, r in rows if r >= posted]
            stored = [r - c for _, c, r in rows if r >= posted]
            if len(latencies) >= n:
                break
            time.sleep(0.5)
        result["group_capture_cpu_ms_per_device"] = round(
            (proc_cpu_s(pid) - capture_cpu0) * 1000 / n, 3
        )
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
            spy = None
        raw_control.put("report")
        raw_frames = raw_out.get(timeout=60)
        raw_lat = [t - posted for t in raw_frames.values() if t >= posted]
        result["group_capture_acked"] = len(latencies)
        say(
            f"  command reached the device: p50 {quantile(delivered, 0.5):.3f} s, p99 "
            f"{quantile(delivered, 0.99):.3f} s; device's frame -> its receipt: p50 "
            f"{quantile(stored, 0.5):.3f} s, p99 {quantile(stored, 0.99):.3f} s",
        )
        result["group_capture_p50_s"] = round(quantile(latencies, 0.5), 3)
        result["group_capture_p99_s"] = round(quantile(latencies, 0.99), 3)
        result["raw_group_capture_p99_s"] = round(quantile(raw_lat, 0.99), 3)
        say(
            f"group capture: {len(latencies)}/{n} frames receipted, p50 "
            f"{result['group_capture_p50_s']} s, p99 {result['group_capture_p99_s']} s "
            f"(raw subscriber saw {len(raw_lat)} frames, "
            f"p99 {result['raw_group_capture_p99_s']} s); controller CPU "
            f"{result['group_capture_cpu_ms_per_device']} ms per device",
        )
        metrics = api.get("/metrics").text
        threads = _thread_cpu(metrics)
        say(
            "writer: "
            + ", ".join(f"{k} {v:.2f} s wall" for k, v in sorted(_stages(metrics).items()))
            + f"; {_metric(metrics, 'camfleet_controller_writer_batches_total'):.0f} batches, "
            f"{_metric(metrics, 'camfleet_controller_writer_jobs_total'):.0f} jobs",
        )
        say(
            "controller CPU by thread over the run (s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(threads.items(), key=lambda kv: -kv[1])),
        )
        peak.stopping.set()
        peak.join()
        result["controller_rss_mib"] = round(peak.rss_kib / 1024, 1)
        result["controller_threads_peak"] = peak.threads
        say(
            f"controller peak: {result['controller_rss_mib']} MiB RSS, "
            f"{result['controller_threads_peak']} threads",
        )
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
        for _, control in workers:
            control.put("stop")
        raw_control.put("stop")
        for p, _ in workers:
            p.join(20)
            if p.is_alive():
                p.kill()
        raw.join(10)
        ctl.stop()
        broker.kill()
    if args.profile:
        _summarize_profile(args.profile)
    if args.json:
        print(json.dumps({k: result.get(k) for k in RESULT_KEYS}))


if __name__ == "__main__":
    main()
