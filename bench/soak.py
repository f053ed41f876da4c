#!/usr/bin/env python3
"""Soak benchmark: does the whole system stay flat when it runs unattended for a long time?

    bench/soak --minutes 25 [--json]

Starts, on this machine and in compressed time: a real mosquitto; `camfleet controller run` with
its HTTP API; simulated ESP32 nodes (`camfleet sim esp32`: the real node code under MicroPython,
one process per wake, deep sleep shortened by ``--time-scale``); Linux edge agents (`camfleet edge
run`, synthetic camera); a schedule for the edge agents' group; ad-hoc capture commands to the
sleeping nodes. The controller's history limits are set small (``--history``) so that the
telemetry, event and command bounds are reached within minutes instead of weeks.

Every ``--sample-s`` it records, for each long-lived process (broker, controller, the node fleet
driver, each edge agent): RSS, threads, open fds and CPU seconds; the registry database and WAL
sizes; row counts of the registry's tables; mosquitto's heap (``$SYS/broker/heap/current``); the
wakes so far. At the end it fits a least-squares slope per hour to each series (after a warm-up),
converts it into growth per 1,000 wakes and per device-day (a node at ``--interval`` seconds),
checks the growth rules below, and checks exactly once: every frame a node or agent produced is
stored once (no (session, seq) gap, nothing left unreceipted in any spool), has its file, and the
file's SHA-256 matches the index.

Growth rules (a failure makes the exit status 1 and is listed under "violations"):
- fds and threads of every process: flat. A violation is growth beyond FD_ALLOWANCE /
  THREAD_ALLOWANCE (plus one per node for the fleet driver, which holds a pipe and a reader
  thread per wake in progress) both in the fitted line over the measured part of the run and
  from the peak of its first half to the peak of its second half: a connection or thread per
  event grows by hundreds in minutes, steadily; a socket or worker that happens to be open at
  one sample and not at another moves the peak, not the line.
- RSS of every process: the fitted growth over the measured part of the run at most
  RSS_ALLOWANCE_MB (allocator and cache warm-up, measured noise ~1-3 MB); the leak of issue 15
  was ~166 KB per wake, ~80 MB in 3 minutes at this rate.
- Registry tables other than ``frames`` (which grows by design, bounded by frame retention):
  the last sample at most TABLE_SLACK above the highest bound the settings allow.
- Broker heap (mosquitto's own count of its allocations): a fitted growth of at most
  BROKER_HEAP_ALLOWANCE bytes per 1,000 wakes. Measured flat at ~0.2 B a wake; nodes that
  SUBSCRIBE again on every wake with a persistent session grew it ~230 B a wake (issue 15).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.esp32_node.tools.hostdevice import HostDevice
from camfleet.mosquitto import Mosquitto, free_port
from camfleet.testing.controller_process import ControllerProcess

FD_ALLOWANCE = 4
THREAD_ALLOWANCE = 3
RSS_ALLOWANCE_MB = 12.0
BROKER_HEAP_ALLOWANCE = 50_000
TABLE_SLACK = 1.1
TABLES = ("devices", "frames", "telemetry", "events", "commands", "device_desired", "schedules")
CAMFLEET = [sys.executable, "-m", "camfleet"]


@dataclass
class Settings:
    minutes: float = 25.0
    nodes: int = 5
    edges: int = 2
    #: simulated seconds between a node's wakes, and real seconds per simulated second of sleep
    interval_s: int = 300
    time_scale: float = 0.003
    sample_s: float = 60.0
    #: controller history limits per device (telemetry, events, finished commands)
    history: int = 50
    #: seconds between the edge group's schedule slots, and between ad-hoc node commands
    schedule_s: int = 5
    command_every_s: float = 3.0
    warmup_fraction: float = 0.2
    workdir: Path | None = None


@dataclass
class Proc:
    name: str
    pid: int


@dataclass
class Sample:
    t: float
    wakes: int
    procs: dict[str, dict[str, float]]
    db_bytes: int
    wal_bytes: int
    rows: dict[str, int]
    broker_heap: int


def proc_stats(pid: int) -> dict[str, float]:
    """RSS (MB), threads, open fds and CPU seconds of a live process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": (int(stat[11]) + int(stat[12])) / ticks,
    }


def table_bytes(db: Path) -> dict[str, dict[str, float]]:
    """Rows, bytes (table + its indexes, from SQLite's dbstat) and bytes per row of each table."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        sizes = dict(
            conn.execute(
                "SELECT s.tbl_name, SUM(d.pgsize) FROM dbstat AS d "
                "JOIN sqlite_schema AS s ON s.name = d.name GROUP BY s.tbl_name"
            ).fetchall()
        )
        out = {}
        for table in TABLES:
            rows = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            size = float(sizes.get(table, 0))
            out[table] = {"rows": rows, "bytes": size, "bytes_per_row": size / max(rows, 1)}
        out["frames"]["jpeg_bytes_avg"] = float(
            conn.execute("SELECT COALESCE(AVG(size), 0) FROM frames").fetchone()[0]
        )
        return out
    finally:
        conn.close()


def project(
    s: Settings, a: dict[str, Any], tb: dict[str, dict[str, float]], nodes: int, days: float
) -> dict[str, float]:
    """``nodes`` ESP32 nodes at ``--interval`` for ``days``, from this run's measured figures and
    the controller's default history limits (1000 telemetry and events, 1000 finished commands
    per device). Frames are kept, unbounded, unless a frame retention policy says otherwise."""
    wakes = nodes * days * 86400 / s.interval_s
    keep = 1000 + 1000 // 8
    frame_row = tb["frames"]["bytes_per_row"]
    bounded = nodes * (
        keep * tb["telemetry"]["bytes_per_row"]
        # a run without events measures no event row: count them at a telemetry row's size
        + keep * (tb["events"] if tb["events"]["rows"] >= 100 else tb["telemetry"])["bytes_per_row"]
        + 1000 * tb["commands"]["bytes_per_row"]
    )
    ctl = a["processes"]["controller"]["rss_mb"]
    heap = a["broker_heap_bytes"]
    return {
        "nodes": nodes,
        "days": days,
        "wakes": wakes,
        "frames": wakes,
        "frame_index_mb": wakes * frame_row / 1e6,
        "frame_files_gb_at_measured_jpeg": wakes * tb["frames"]["jpeg_bytes_avg"] / 1e9,
        "frame_files_gb_at_25kB_jpeg": wakes * 25_000 / 1e9,
        "other_tables_mb_bound": bounded / 1e6,
        "controller_rss_mb": ctl["last"] + max(0.0, ctl["per_1000_wakes"]) * wakes / 1000,
        "broker_heap_mb": (heap["last"] + max(0.0, heap["per_1000_wakes"]) * wakes / 1000) / 1e6,
    }


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 when xs do not vary)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


class Soak:
    def __init__(self, s: Settings, work: Path) -> None:
        self.s = s
        self.work = work
        self.samples: list[Sample] = []
        self.wakes = 0
        self.wake_ends: dict[str, int] = {}
        self._heap = 0
        self._stop = threading.Event()
        self._children: list[subprocess.Popen[Any]] = []
        self.procs: list[Proc] = []
        self.commands_sent = 0
        self.problems: list[str] = []

    # --- the system under test ----------------------------------------------------------------

    def start(self) -> None:
        s, work = self.s, self.work
        self.broker = Mosquitto(work / "broker", log_file=work / "broker" / "mosquitto.log")
        self.broker.start()
        self.data = work / "controller"
        self.data.mkdir()
        self.http = f"127.0.0.1:{free_port()}"
        history = str(s.history)
        self.controller = ControllerProcess(
            self.broker.host,
            self.broker.port,
            self.data,
            "--http",
            self.http,
            "--telemetry-history",
            history,
            "--event-history",
            history,
            "--command-history",
            history,
            # retention (frames: none; commands: by count) every 10 s instead of 5 minutes
            "--retention-interval-s",
            "10",
        )
        self.controller.start()
        assert self.controller.proc is not None
        self.procs = [
            Proc("broker", self.broker.proc.pid),  # type: ignore[union-attr]
            Proc("controller", self.controller.proc.pid),
        ]
        self.api = httpx.Client(
            base_url=f"http://{self.http}",
            headers={"Authorization": f"Bearer {(self.data / 'api-token').read_text().strip()}"},
            timeout=30,
        )
        for i in range(s.edges):
            self._start_edge(i)
        r = self.api.post(
            "/api/v1/schedules",
            json={
                "target_kind": "group",
                "target": "soak-edge",
                "kind": "interval",
                "spec": str(s.schedule_s),
            },
        )
        r.raise_for_status()
        self.schedule_id = r.json()["id"]
        self.nodes_dir = work / "nodes"
        fleet = subprocess.Popen(
            [
                *CAMFLEET,
                "sim",
                "esp32",
                "--count",
                str(s.nodes),
                "--broker",
                self.broker.url,
                "--prefix",
                "soak-node",
                "--interval",
                str(s.interval_s),
                "--time-scale",
                str(s.time_scale),
                "--state-dir",
                str(self.nodes_dir),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=open(work / "fleet.log", "ab"),  # noqa: SIM115
            text=True,
            start_new_session=True,
        )
        self._children.append(fleet)
        self.fleet = fleet
        self.procs.append(Proc("esp32-fleet", fleet.pid))
        threading.Thread(target=self._count_wakes, args=(fleet,), daemon=True).start()
        self._watch_heap()
        threading.Thread(target=self._command_nodes, daemon=True).start()

    def _start_edge(self, i: int) -> None:
        d = self.work / f"edge-{i}"
        d.mkdir()
        cfg = d / "edge.toml"
        cfg.write_text(
            f'[device]\nid = "soak-edge-{i}"\ngroups = ["soak-edge"]\n'
            f'[broker]\nurl = "{self.broker.url}"\n'
            f'[camera]\nbackend = "synthetic"\nwidth = 320\nheight = 240\n'
            f"[camera.options]\nseed = {i}\n"
            f'[agent]\nstate_dir = "state"\ntelemetry_interval_s = 5\n'
        )
        proc = subprocess.Popen(
            [*CAMFLEET, "edge", "run", "--config", str(cfg), "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=open(d / "agent.log", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        self._children.append(proc)
        self.procs.append(Proc(f"edge-{i}", proc.pid))

    def _kill_fleet(self) -> None:
        """The fleet did not stop on SIGTERM within 60 s: record
        where it hung, then cut the power of its wakes (each is its own session, a child of the
        fleet) and kill it. The wake after this one replays what they left, as after SIGTERM."""
        pid = self.fleet.pid
        spy = Path(sys.executable).with_name("py-spy")
        with open(self.work / "fleet.log", "ab") as log:
            log.write(b"\nsoak: the fleet did not stop within 60 s of SIGTERM; its stacks:\n")
            log.flush()
            if spy.exists():
                subprocess.run([str(spy), "dump", "--pid", str(pid)], stdout=log, stderr=log)
        for entry in Path("/proc").iterdir():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                try:
                    os.killpg(int(entry.name), signal.SIGKILL)
                except OSError:
                    pass
        self.fleet.kill()
        self.fleet.wait(30)
        print(
            "soak: the node fleet did not stop on SIGTERM; killed it (see fleet.log)",
            file=sys.stderr,
        )

    def _count_wakes(self, fleet: subprocess.Popen[str]) -> None:
        assert fleet.stdout is not None
        for line in fleet.stdout:
            try:
                report = json.loads(line)
            except ValueError:
                continue
            self.wakes += 1
            self.wake_ends[report["ended"]] = self.wake_ends.get(report["ended"], 0) + 1

    def _watch_heap(self) -> None:
        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            try:
                self._heap = int(msg.payload)
            except ValueError:
                pass

        self._sys = paho.Client(CallbackAPIVersion.VERSION2, client_id="soak-sys-watcher")
        self._sys.on_message = on_message
        self._sys.on_connect = lambda c, *a: c.subscribe("$SYS/broker/heap/current")
        self._sys.connect(self.broker.host, self.broker.port)
        self._sys.loop_start()

    def _command_nodes(self) -> None:
        """A capture command to one sleeping node after another: it waits in its session."""
        i = 0
        while not self._stop.wait(self.s.command_every_s):
            device = f"soak-node-{i % self.s.nodes}"
            i += 1
            try:
                r = self.api.post(
                    "/api/v1/commands",
                    json={"action": "capture", "device": device, "expires_in_s": 600},
                )
                if r.status_code < 300:
                    self.commands_sent += 1
            except httpx.HTTPError:
                pass  # counted as not sent; the soak does not depend on it

    # --- measuring ----------------------------------------------------------------------------

    def sample(self, t: float) -> Sample:
        procs = {}
        for p in self.procs:
            try:
                procs[p.name] = proc_stats(p.pid)
            except (FileNotFoundError, ProcessLookupError):
                self.problems.append(f"{p.name} (pid {p.pid}) is gone at {t:.0f} s")
        db = self.data / "registry.sqlite3"
        wal = Path(f"{db}-wal")
        rows = {}
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            for table in TABLES:
                rows[table] = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        finally:
            conn.close()
        return Sample(
            t=t,
            wakes=self.wakes,
            procs=procs,
            db_bytes=db.stat().st_size,
            wal_bytes=wal.stat().st_size if wal.exists() else 0,
            rows=rows,
            broker_heap=self._heap,
        )

    def run(self, progress: Callable[[Sample], None]) -> None:
        t0 = time.monotonic()
        end = t0 + self.s.minutes * 60
        next_at = t0
        while True:
            now = time.monotonic()
            if now >= next_at:
                sample = self.sample(now - t0)
                self.samples.append(sample)
                progress(sample)
                next_at += self.s.sample_s
            if now >= end or self.fleet.poll() is not None:
                break
            self._stop.wait(max(0.0, min(next_at, end) - time.monotonic()))
        if self.fleet.poll() is not None:
            self.problems.append(f"the node fleet exited early ({self.fleet.returncode})")

    # --- ending and exactly-once --------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Stop the producers, settle the spools, check every frame, stop the rest."""
        self._stop.set()
        # No more capture commands for the edge agents: a frame captured while they stop would
        # be stored while the check reads the index (seen once in a 25-minute run).
        self.api.patch(f"/api/v1/schedules/{self.schedule_id}", json={"enabled": False})
        # SIGTERM, not SIGINT: a soak started by a shell without job control (a CI runner) passes
        # SIGINT on ignored; the sim cuts the power of the wakes in progress on either
        self.fleet.send_signal(signal.SIGTERM)
        try:
            self.fleet.wait(60)
        except subprocess.TimeoutExpired:
            self._kill_fleet()
        # One more wake per node: it replays what a cut wake left in its spool and waits for
        # the receipts, as a real node does on its next wake.
        nodes = [
            HostDevice(self.nodes_dir / f"soak-node-{i}", f"soak-node-{i}")
            for i in range(self.s.nodes)
        ]
        for dev in nodes:
            dev.start_wake("timer")
        for dev in nodes:
            dev.wait_wake(120)
        for proc in self._children[1:]:  # the edge agents: a clean stop
            proc.send_signal(signal.SIGTERM)
        for proc in self._children[1:]:
            proc.wait(60)
        # Until the index stops changing and every file is written (files are written behind
        # the ack; nothing to await over HTTP, so look twice a second, for two minutes at most).
        deadline = time.monotonic() + 120
        last = -1
        while time.monotonic() < deadline:
            rows = self._frame_rows()
            if rows == last and not self._metric("camfleet_controller_frame_files_pending"):
                break
            last = rows
            self._stop.wait(0.5)
        self.table_bytes = table_bytes(self.data / "registry.sqlite3")
        return self._exactly_once(nodes)

    def _frame_rows(self) -> int:
        conn = sqlite3.connect(f"file:{self.data / 'registry.sqlite3'}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0])
        finally:
            conn.close()

    def _metric(self, name: str) -> float:
        for line in self.api.get("/metrics").text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def _exactly_once(self, nodes: list[HostDevice]) -> dict[str, Any]:
        conn = sqlite3.connect(f"file:{self.data / 'registry.sqlite3'}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT device_id, session, seq, sha256, store_key FROM frames"
            ).fetchall()
        finally:
            conn.close()
        by_session: dict[tuple[str, int], list[int]] = {}
        bad_sha, missing = 0, 0
        for device_id, session, seq, sha, key in rows:
            by_session.setdefault((device_id, session), []).append(seq)
            path = self.data / key
            try:
                if hashlib.sha256(path.read_bytes()).hexdigest() != sha:
                    bad_sha += 1
            except FileNotFoundError:
                missing += 1
        gaps = sum(
            1 for seqs in by_session.values() if sorted(seqs) != list(range(1, max(seqs) + 1))
        )
        files = sum(1 for _ in (self.data / "frames").rglob("*.jpg"))
        unreceipted = {d.device_id: len(d.spool_files()) for d in nodes if d.spool_files()}
        for i in range(self.s.edges):
            spool = self.work / f"edge-{i}" / "state" / "spool"
            left = [p for p in spool.rglob("*") if p.is_file()] if spool.exists() else []
            if left:
                unreceipted[f"soak-edge-{i}"] = len(left)
        result = {
            "index_rows": len(rows),
            "files": files,
            "files_missing": missing,
            "sha256_mismatch": bad_sha,
            "sessions_with_seq_gaps": gaps,
            "unreceipted_in_spools": unreceipted,
        }
        result["ok"] = (
            files == len(rows) and not missing and not bad_sha and not gaps and not unreceipted
        )
        return result

    def stop(self) -> None:
        self._stop.set()
        for proc in self._children:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        try:
            self.controller.stop()
        finally:
            if hasattr(self, "_sys"):
                self._sys.loop_stop()
            self.broker.stop()


# --- analysis ---------------------------------------------------------------------------------


def analyse(s: Settings, samples: list[Sample]) -> dict[str, Any]:
    """Slopes, projections and the growth rules over the measured part of the run."""
    skip = max(1, int(len(samples) * s.warmup_fraction))
    measured = samples[skip:]
    if len(measured) < 4:
        return {"violations": [f"only {len(measured)} samples after warm-up: run longer"]}
    hours = [x.t / 3600 for x in measured]
    wakes = [float(x.wakes) for x in measured]
    span_h = hours[-1] - hours[0]
    wakes_per_device_day = 86400 / s.interval_s
    half = len(measured) // 2

    def series(values: list[float]) -> dict[str, float]:
        per_hour = slope(hours, values)
        per_wake = slope(wakes, values) if wakes[-1] > wakes[0] else 0.0
        return {
            "first": values[0],
            "last": values[-1],
            "min": min(values),
            "max": max(values),
            "per_hour": per_hour,
            "per_1000_wakes": per_wake * 1000,
            "per_device_day": per_wake * wakes_per_device_day,
        }

    out: dict[str, Any] = {"processes": {}, "violations": []}
    for name in measured[0].procs:
        stats: dict[str, Any] = {}
        present = [x for x in measured if name in x.procs]
        for key in ("rss_mb", "threads", "fds"):
            stats[key] = series([x.procs[name][key] for x in present])
        cpu = [x.procs[name]["cpu_s"] for x in present]
        third = max(1, len(present) // 3)
        stats["cpu_ms_per_wake_first_third"] = _per_wake(present[: third + 1], cpu[: third + 1])
        stats["cpu_ms_per_wake_last_third"] = _per_wake(present[-third - 1 :], cpu[-third - 1 :])
        # CPU per wake of each sampling interval, fitted against the wakes so far: does a wake
        # cost more as history accumulates?
        points = [
            (float(b.wakes), (cb - ca) / (b.wakes - a.wakes) * 1000)
            for a, b, ca, cb in zip(present, present[1:], cpu, cpu[1:], strict=False)
            if b.wakes > a.wakes
        ]
        stats["cpu_ms_per_wake_change_per_1000_wakes"] = (
            slope([w for w, _ in points], [c for _, c in points]) * 1000
        )
        out["processes"][name] = stats
        # The node fleet driver holds a pipe and a reader thread per wake in progress.
        extra = s.nodes if name == "esp32-fleet" else 0
        for key, allowance in (("fds", FD_ALLOWANCE), ("threads", THREAD_ALLOWANCE)):
            allowance += extra
            values = [x.procs[name][key] for x in present]
            peak_growth = max(values[half:]) - max(values[:half])
            fitted_growth = stats[key]["per_hour"] * span_h
            # Both must exceed the allowance: a leak does both, steadily; a worker or socket
            # that happens to be open at one sample moves the peak but not the fitted line.
            if peak_growth > allowance and fitted_growth > allowance:
                out["violations"].append(
                    f"{name}: {key} grew by {fitted_growth:.0f} (fitted; peak +{peak_growth:.0f};"
                    f" allowed {allowance}): {values[0]:.0f} -> {values[-1]:.0f}"
                )
        rss_growth = stats["rss_mb"]["per_hour"] * span_h
        if rss_growth > RSS_ALLOWANCE_MB:
            out["violations"].append(
                f"{name}: RSS grew {rss_growth:.1f} MB over {span_h * 60:.1f} min "
                f"(allowed {RSS_ALLOWANCE_MB} MB; {stats['rss_mb']['per_1000_wakes']:.1f} MB "
                "per 1000 wakes)"
            )
    out["db_bytes"] = series([float(x.db_bytes) for x in measured])
    out["wal_bytes"] = series([float(x.wal_bytes) for x in measured])
    out["broker_heap_bytes"] = series([float(x.broker_heap) for x in measured])
    heap_growth = out["broker_heap_bytes"]["per_1000_wakes"]
    if heap_growth > BROKER_HEAP_ALLOWANCE:
        out["violations"].append(
            f"broker heap grows {heap_growth:.0f} B per 1000 wakes "
            f"(allowed {BROKER_HEAP_ALLOWANCE})"
        )
    out["rows"] = {t: series([float(x.rows[t]) for x in measured]) for t in TABLES}
    devices = s.nodes + s.edges
    bounds = {
        "devices": devices,
        "telemetry": devices * 2 * s.history,  # trimmed back to `history` past twice that
        "events": devices * 2 * s.history,
        # finished commands: `history` per device; pending ones on top (each node has a few
        # capture commands waiting in its session, the edge agents' expire within a minute)
        "commands": devices * s.history + samples[-1].rows["devices"] * 20,
        "device_desired": devices,
    }
    for table, bound in bounds.items():
        last = samples[-1].rows[table]
        if last > bound * TABLE_SLACK:
            out["violations"].append(f"table {table}: {last} rows, bound {bound}")
    out["wakes"] = samples[-1].wakes
    out["minutes"] = samples[-1].t / 60
    out["wakes_per_minute"] = samples[-1].wakes / max(samples[-1].t / 60, 1e-9)
    return out


def _per_wake(samples: list[Sample], cpu: list[float]) -> float:
    wakes = samples[-1].wakes - samples[0].wakes
    return (cpu[-1] - cpu[0]) / wakes * 1000 if wakes > 0 else 0.0


def report(s: Settings, a: dict[str, Any], once: dict[str, Any], extra: dict[str, Any]) -> None:
    print(
        f"\n{a.get('minutes', 0):.1f} min, {a.get('wakes', 0)} wakes "
        f"({a.get('wakes_per_minute', 0):.0f}/min) of {s.nodes} nodes, {s.edges} edge agents; "
        f"wake endings {extra['wake_ends']}; capture commands sent {extra['commands_sent']}"
    )
    print(
        "growth after warm-up (fitted slope; per device-day = per wake x "
        f"{86400 / s.interval_s:.0f} wakes):"
    )
    print(
        f"  {'series':<28} {'first':>10} {'last':>10} {'/hour':>10} {'/1000 wakes':>12} "
        f"{'/device-day':>12}"
    )

    def row(label: str, x: dict[str, float], unit: str = "") -> None:
        print(
            f"  {label:<28} {x['first']:>10.1f} {x['last']:>10.1f} {x['per_hour']:>10.2f} "
            f"{x['per_1000_wakes']:>12.3f} {x['per_device_day']:>12.3f} {unit}"
        )

    for name, stats in a.get("processes", {}).items():
        for key in ("rss_mb", "threads", "fds"):
            row(f"{name} {key}", stats[key])
        print(
            f"  {name + ' CPU ms/wake':<28} first third {stats['cpu_ms_per_wake_first_third']:.2f},"
            f" last third {stats['cpu_ms_per_wake_last_third']:.2f}, fitted change "
            f"{stats['cpu_ms_per_wake_change_per_1000_wakes']:+.3f} per 1000 wakes"
        )
    for key in ("db_bytes", "wal_bytes", "broker_heap_bytes"):
        if key in a:
            row(key, a[key])
    for table, x in a.get("rows", {}).items():
        row(f"rows {table}", x)
    print(f"exactly once: {json.dumps(once)}")
    tb = extra.get("table_bytes")
    if tb:
        print("registry bytes per row (table + indexes, dbstat):")
        for table, x in tb.items():
            print(f"  {table:<16} {x['rows']:>8.0f} rows {x['bytes_per_row']:>8.0f} B/row")
    if "projection" in extra:
        print(
            f"projection (measured slopes x wakes; default history limits): {extra['projection']}"
        )
    if a["violations"]:
        print("VIOLATIONS:")
        for v in a["violations"]:
            print(f"  - {v}")
    else:
        print("no growth beyond the allowances")


def main(argv: list[str] | None = None) -> int:
    d = Settings()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=d.minutes)
    ap.add_argument("--nodes", type=int, default=d.nodes, help="simulated ESP32 nodes")
    ap.add_argument("--edges", type=int, default=d.edges, help="edge agents")
    ap.add_argument("--interval", type=int, default=d.interval_s, help="node wake interval (s)")
    ap.add_argument("--time-scale", type=float, default=d.time_scale)
    ap.add_argument("--sample-s", type=float, default=d.sample_s)
    ap.add_argument("--history", type=int, default=d.history, help="per-device history limits")
    ap.add_argument("--schedule-s", type=int, default=d.schedule_s, help="edge schedule period")
    ap.add_argument(
        "--command-every-s", type=float, default=d.command_every_s, help="node command period"
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", action="store_true", help="print one JSON document at the end")
    args = ap.parse_args(argv)
    s = Settings(
        minutes=args.minutes,
        nodes=args.nodes,
        edges=args.edges,
        interval_s=args.interval,
        time_scale=args.time_scale,
        sample_s=args.sample_s,
        history=args.history,
        schedule_s=args.schedule_s,
        command_every_s=args.command_every_s,
        workdir=args.workdir,
    )
    with tempfile.TemporaryDirectory(prefix="camfleet-soak-") as tmp:
        work = s.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        soak = Soak(s, work)

        def progress(x: Sample) -> None:
            if args.json:
                return
            ctl = x.procs.get("controller", {})
            print(
                f"{x.t / 60:5.1f} min  wakes {x.wakes:6d}  controller rss "
                f"{ctl.get('rss_mb', 0):6.1f} MB fds {ctl.get('fds', 0):4.0f} threads "
                f"{ctl.get('threads', 0):3.0f}  db {x.db_bytes / 1e6:6.2f} MB wal "
                f"{x.wal_bytes / 1e6:6.2f} MB  broker heap {x.broker_heap / 1e3:7.1f} kB  "
                f"rows {x.rows}",
                flush=True,
            )

        try:
            soak.start()
            soak.run(progress)
            once = soak.finish()
        finally:
            soak.stop()
        a = analyse(s, soak.samples)
        a["violations"] = soak.problems + a["violations"]
        if not once["ok"]:
            a["violations"].append(f"exactly once failed: {once}")
        extra: dict[str, Any] = {
            "wake_ends": soak.wake_ends,
            "commands_sent": soak.commands_sent,
            "table_bytes": getattr(soak, "table_bytes", {}),
        }
        if extra["table_bytes"] and "processes" in a:
            extra["projection"] = project(s, a, extra["table_bytes"], nodes=50, days=30)
        if args.json:
            print(
                json.dumps(
                    {
                        "settings": {k: str(v) for k, v in s.__dict__.items()},
                        "analysis": a,
                        "exactly_once": once,
                        **extra,
                        "samples": [x.__dict__ for x in soak.samples],
                    }
                )
            )
        else:
            report(s, a, once, extra)
    return 1 if a["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
