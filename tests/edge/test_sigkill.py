"""SIGKILL while spooling: after a restart no frame is corrupt and none is lost.

The agent runs as a real process (``camfleet edge run``) capturing 50 frames/s with fsync on;
the receiver sends no receipts during the first runs, so every frame stays in the spool while
the process is killed, three times, at arbitrary moments. After each kill every spooled file is
whole; after the final restart every frame that reached the spool (and every frame a subscriber
saw) arrives intact, the killed sessions' seqs have no gap, the spool drains on receipts, and
each will announced the death with the killed session's number.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from camfleet.edge.spool import Spool
from camfleet.proto.v1 import state_pb2


def write_config(path: Path, device_id: str, url: str, state_dir: Path) -> None:
    path.write_text(
        f"""
[device]
id = "{device_id}"
[broker]
url = "{url}"
reconnect_min_s = 0.05
reconnect_max_s = 0.3
keepalive_s = 5
[camera]
backend = "synthetic"
width = 160
height = 120
[schedule]
interval_s = 0.02
[agent]
state_dir = "{state_dir}"
telemetry_interval_s = 0
"""
    )


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "camfleet",
            "edge",
            "run",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_while_spooling_loses_and_corrupts_nothing(
    mosquitto, tmp_path, device_id, receiver_for
):
    rx = receiver_for(mosquitto, device_id, receipts=False)
    state_dir = tmp_path / "state"
    config = tmp_path / "edge.toml"
    write_config(config, device_id, mosquitto.url, state_dir)
    spool_dir = state_dir / "spool"

    killed_sessions = []
    for round_ in range(3):  # three kills at three arbitrary moments
        target = 30 * (round_ + 1)
        proc = start_agent(config)
        try:
            rx.wait_for(
                lambda g, n=target: len(g.frames) >= n,
                timeout=30,
                what=f"{target} frames before kill {round_ + 1}",
            )
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(60)
        killed = max(s for s, _ in rx.got.frames)
        killed_sessions.append(killed)
        rx.wait_for(
            lambda g, k=killed: any(
                s.presence == state_pb2.PRESENCE_OFFLINE and s.session == k for s in g.states
            ),
            what="the will with the killed session",
        )
        on_disk = Spool(spool_dir, max_frames=10**6, max_bytes=10**12, fsync=False)
        assert on_disk.removed_temp_files <= 1  # at most the one write the kill interrupted
        for key in on_disk.frame_keys():
            on_disk.read(key)  # raises CorruptFrame for a damaged file
        seen = set(rx.got.frames)
        spooled = set(on_disk.frame_keys())
        assert seen <= spooled, "a frame was published before it was durable in the spool"
    assert killed_sessions == sorted(set(killed_sessions))  # sessions only grow

    rx.receipts = True
    mark = len(rx.got.arrivals)

    def replayed_after_restart(g: object) -> set[tuple[int, int]]:
        return {(f.session, f.seq) for f in rx.got.arrivals[mark:]}

    proc = start_agent(config)
    try:
        rx.wait_for(
            lambda g: spooled <= replayed_after_restart(g) and any(s > killed for s, _ in g.frames),
            timeout=30,
            what="replay of the whole spool and new frames",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert not rx.got.errors, rx.got.errors
    for session in killed_sessions:
        seqs = sorted(seq for s, seq in rx.got.frames if s == session)
        assert seqs == list(range(1, len(seqs) + 1)), f"gap in session {session}"
    # Every unreceipted frame was sent again after the restart, flagged historical.
    replays = [f for f in rx.got.arrivals[mark:] if (f.session, f.seq) in spooled]
    assert replays and all(f.historical for f in replays)
    assert not (spool_dir / "corrupt").exists()
    final = [s for s in rx.got.states if s.presence == state_pb2.PRESENCE_OFFLINE]
    assert final[-1].session > killed  # orderly shutdown of the last run
