"""Storms leave other devices' ingest flowing, with memory and threads bounded (issue 9).

Each test runs a real controller process on the test's mosquitto, a control device sending a
frame every 0.2 s, and a storm: 1,500 never-completed chunk sets (plus 3,000 first chunks
claiming 32 MiB each), 3,000 births in a second, or a full disk (a loop-mounted 32 MiB ext4).
What is measured: the longest time a control frame waited for its receipt (its frames stored,
end to end), the controller's peak RSS and thread count (from /proc), and that the control
device lost nothing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.mosquitto import free_port
from camfleet.proto import codec, topics
from camfleet.proto.v1 import frame_pb2, state_pb2
from camfleet.testing.controller_process import ControllerProcess
from camfleet.testing.sim_device import SimDevice, unique_id

#: "A few seconds": the longest a control frame may wait for its receipt during a storm.
MAX_WAIT_S = 5.0


class Proc:
    """Peak RSS and thread count of a process, sampled every 50 ms while active."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = self.peak_threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def status(self) -> tuple[int, int]:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{self.pid}/status").read_text().splitlines()
        )
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["Threads"])

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                rss, threads = self.status()
            except (OSError, KeyError):
                return
            self.peak_rss, self.peak_threads = (
                max(self.peak_rss, rss),
                max(self.peak_threads, threads),
            )

    def __enter__(self) -> Proc:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class ControlDevice:
    """A device sending a frame every ``period_s`` on its own thread."""

    def __init__(self, host: str, port: int, period_s: float = 0.2, size: int = 20_000) -> None:
        self.dev = SimDevice(host, port, unique_id("control"))
        self.dev.frame_size = size
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):  # paced load, not a wait for an event
            self.dev.send_frames(1)

    def start(self) -> ControlDevice:
        self.dev.connect()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def longest_wait(self, since: float, until: float) -> float:
        """Longest time a frame sent in [since, until] waited for its receipt (to now if none)."""
        now = time.time()
        with self.dev._cond:
            waits = [
                self.dev.receipt_times.get(k, now) - sent
                for k, sent in self.dev.sent_times.items()
                if since <= sent <= until
            ]
        assert waits, "the control device sent nothing in the window"
        return max(waits)


def publisher(host: str, port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    return client


@contextmanager
def controller(mosquitto, data: Path, *args: str) -> Iterator[ControllerProcess]:  # type: ignore[no-untyped-def]
    ctl = ControllerProcess(mosquitto.host, mosquitto.port, data, *args)
    ctl.start(timeout=30)
    try:
        yield ctl
    finally:
        ctl.stop()


def _chunk(session: int, seq: int, total: int, data: bytes) -> bytes:
    return codec.encode(
        frame_pb2.FrameChunk(
            session=session, seq=seq, index=1, count=2, total_size=total,
            sha256=hashlib.sha256(data).digest(), offset=0, data=data,
        )
    )  # fmt: skip


def test_chunk_storms_leave_ingest_flowing_and_memory_bounded(mosquitto, tmp_path):  # type: ignore[no-untyped-def]
    with controller(mosquitto, tmp_path / "data", "--chunk-timeout-s", "30") as ctl:
        assert ctl.proc is not None
        control = ControlDevice(mosquitto.host, mosquitto.port).start()
        assert control.dev.wait_until(lambda: len(control.dev.receipted) >= 3, 30)
        attacker = publisher(mosquitto.host, mosquitto.port)
        with Proc(ctl.proc.pid) as proc:
            rss_before, threads_before = proc.status()
            start = time.time()
            one = topics.device_topic(unique_id("chunker"), topics.Kind.CHUNK)
            infos = [
                attacker.publish(one, _chunk(1, seq, 2048, os.urandom(1024)), qos=1)
                for seq in range(1, 1501)
            ]
            # 3,000 first chunks claiming 32 MiB each, spread over 100 device ids.
            claims = [topics.device_topic(f"claimer-{i}", topics.Kind.CHUNK) for i in range(100)]
            infos += [
                attacker.publish(
                    claims[n % 100], _chunk(1, n + 1, 32 * 1024 * 1024, os.urandom(1024)), qos=1
                )
                for n in range(3000)
            ]
            for info in infos:
                info.wait_for_publish(60)
            storm_end = time.time()
            # The control device keeps being stored through the storm and after it.
            sent = len(control.dev.sent_times)
            assert control.dev.wait_until(lambda: len(control.dev.receipted) >= sent, 30)
        control.stop()
        attacker.loop_stop()
        attacker.disconnect()
        longest = control.longest_wait(start, storm_end)
        assert longest <= MAX_WAIT_S, f"a control frame waited {longest:.1f} s for its receipt"
        assert control.dev.wait_receipted(timeout=30)  # nothing lost
        grew = proc.peak_rss - rss_before
        assert grew < 100 * 1024 * 1024, f"RSS grew {grew / 2**20:.0f} MiB during the storm"
        assert proc.peak_threads <= threads_before + 2
        log = (tmp_path / "data-controller.log").read_text()
        # Evictions are logged once per limit, never once per frame.
        assert 1 <= log.count("to make room") <= 2, log[-2000:]
        control.dev.disconnect()
        print(f"chunk storm: longest control wait {longest:.2f} s, RSS +{grew / 2**20:.1f} MiB")


def test_a_birth_storm_costs_no_thread_per_birth(mosquitto, tmp_path):  # type: ignore[no-untyped-def]
    with controller(mosquitto, tmp_path / "data") as ctl:
        assert ctl.proc is not None
        control = ControlDevice(mosquitto.host, mosquitto.port).start()
        assert control.dev.wait_until(lambda: len(control.dev.receipted) >= 3, 30)
        storm = publisher(mosquitto.host, mosquitto.port)
        with Proc(ctl.proc.pid) as proc:
            rss_before, threads_before = proc.status()
            start = time.time()
            infos = []
            for i in range(3000):
                birth = state_pb2.DeviceState(
                    presence=state_pb2.PRESENCE_ONLINE, session=1, groups=["storm"]
                )
                infos.append(
                    storm.publish(
                        topics.device_topic(f"born-{i}", topics.Kind.STATE),
                        codec.encode(birth),
                        qos=1,
                        retain=True,
                    )
                )
            for info in infos:
                info.wait_for_publish(60)
            storm_end = time.time()
            published = storm_end - start
            sent = len(control.dev.sent_times)
            assert control.dev.wait_until(lambda: len(control.dev.receipted) >= sent, 30)
            # Every birth was handled (each device in the registry).
            db = tmp_path / "data" / "registry.sqlite3"
            assert _wait_count(
                db, "SELECT COUNT(*) FROM devices WHERE device_id LIKE 'born-%'", 3000
            )
        control.stop()
        for i in range(3000):  # clear the retained births
            storm.publish(
                topics.device_topic(f"born-{i}", topics.Kind.STATE), b"", qos=1, retain=True
            )
        storm.loop_stop()
        storm.disconnect()
        longest = control.longest_wait(start, storm_end)
        assert longest <= MAX_WAIT_S, f"a control frame waited {longest:.1f} s for its receipt"
        assert proc.peak_threads <= threads_before + 2, (threads_before, proc.peak_threads)
        grew = proc.peak_rss - rss_before
        assert grew < 100 * 1024 * 1024, f"RSS grew {grew / 2**20:.0f} MiB during the storm"
        control.dev.disconnect()
        print(
            f"birth storm: 3000 births published in {published:.2f} s; longest control wait "
            f"{longest:.2f} s; threads {threads_before} -> peak {proc.peak_threads}; "
            f"RSS +{grew / 2**20:.1f} MiB"
        )


def _wait_count(db: Path, sql: str, want: int, timeout: float = 60.0) -> bool:
    import sqlite3

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            if con.execute(sql).fetchone()[0] >= want:
                return True
        finally:
            con.close()
        threading.Event().wait(0.2)  # polling another process's database: no event to await
    return False


@contextmanager
def small_filesystem(mountpoint: Path, size_mib: int) -> Iterator[Path]:
    """A real ext4 of ``size_mib`` loop-mounted at ``mountpoint`` (needs root, as here)."""
    image = mountpoint.with_suffix(".img")
    mountpoint.mkdir(parents=True)
    with open(image, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        image.unlink(missing_ok=True)


def _fill(path: Path) -> None:
    """Write ``path`` until the filesystem says it is full."""
    block = b"\0" * (1024 * 1024)
    with open(path, "ab") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError:
            pass
        try:
            os.fsync(f.fileno())
        except OSError:
            pass


def test_a_full_disk_refuses_frames_then_resumes_by_itself(mosquitto, tmp_path):  # type: ignore[no-untyped-def]
    port = free_port()
    with (
        small_filesystem(tmp_path / "mnt", 32) as data,
        controller(
            mosquitto,
            data,
            "--http",
            f"127.0.0.1:{port}",
            "--disk-low-bytes",
            str(6 * 2**20),
            "--disk-resume-bytes",
            str(10 * 2**20),
            # A small window: frames held unacknowledged while the disk is full would fill it
            # (and stop every message behind them) within the burst below.
            "--receive-maximum",
            "50",
        ) as ctl,  # fmt: skip
    ):
        assert ctl.proc is not None
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        control = ControlDevice(mosquitto.host, mosquitto.port).start()
        # The first frames are stored on a 32 MiB filesystem (the frame log fits it).
        assert control.dev.wait_until(lambda: len(control.dev.receipted) >= 3, 30)
        assert http.get("/health").json()["status"] == "ok"
        with Proc(ctl.proc.pid) as proc:
            rss_before, _ = proc.status()
            _fill(data / "filler")
            assert _until(lambda: http.get("/health").json()["status"] == "degraded")
            health = http.get("/health").json()
            assert health["accepting_frames"] is False
            assert any("disk space low" in r for r in health["reasons"]), health
            control.dev.send_frames(100, size=1000)  # a burst while nothing can be stored
            assert _until(lambda: "frames_refused_total" in http.get("/metrics").text)
            # Free a little (still under the low watermark): events are recorded meanwhile.
            os.truncate(data / "filler", max(0, (data / "filler").stat().st_size - 3 * 2**20))
            control.dev.publish_raw("event", codec.encode(_event("spool_dropped")))
            assert _until(
                lambda: any(
                    e["type"] == "spool_dropped"
                    for e in http.get(f"/api/v1/devices/{control.dev.device_id}/events").json()[
                        "items"
                    ]
                )
            )
            assert http.get("/health").json()["status"] == "degraded"
            # Space returns: frames are accepted again by themselves, within seconds.
            (data / "filler").unlink()
            freed = time.time()
            assert _until(lambda: http.get("/health").json()["status"] == "ok")
            resumed = _first_receipt_after(control, freed)
            assert resumed - freed <= MAX_WAIT_S, f"ingest resumed {resumed - freed:.1f} s later"
            control.stop()
            # The refused frames are still on the device: its replay stores them. Nothing lost.
            control.dev.replay_spool()
            assert control.dev.wait_receipted(timeout=60)
        grew = proc.peak_rss - rss_before
        assert grew < 100 * 1024 * 1024
        log = (tmp_path / "mnt-controller.log").read_text()
        assert log.count("Traceback") <= 10, log[-3000:]
        control.dev.disconnect()
        print(f"full disk: ingest resumed {resumed - freed:.2f} s after space returned")


def _event(kind: str):  # type: ignore[no-untyped-def]
    from camfleet.proto.v1 import telemetry_pb2

    return telemetry_pb2.Event(
        type=kind, message="spool full", timestamp_ms=int(time.time() * 1000)
    )


def _first_receipt_after(control: ControlDevice, t: float, timeout: float = 30.0) -> float:
    """When the first frame sent after ``t`` got its receipt."""

    def done() -> bool:
        return any(
            sent >= t and k in control.dev.receipt_times
            for k, sent in control.dev.sent_times.items()
        )

    assert control.dev.wait_until(done, timeout), "no frame stored after space returned"
    with control.dev._cond:
        return min(
            control.dev.receipt_times[k]
            for k, sent in control.dev.sent_times.items()
            if sent >= t and k in control.dev.receipt_times
        )


def _until(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        threading.Event().wait(0.1)  # polling another process over HTTP: no event to await
    return False
