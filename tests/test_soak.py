"""The short soak of CI: bench/soak for two minutes of compressed time, judged by its rules.

What runs (bench/soak.py): a real mosquitto, `camfleet controller run`, 5 simulated ESP32 nodes
(the real node code under MicroPython, ~250 wakes a minute), 2 edge agents on a schedule, capture
commands to the sleeping nodes. Every 5 s it samples RSS, threads and fds of each long-lived
process, the registry's size and row counts and the broker's heap.

Which leaks it catches (each one a violation, so the test fails):
- a resource per event in any long-lived process: a registry connection per thread with a
  thread per birth (issue 15: +2 fds and ~166 KB per wake; with that connection-per-thread
  registry put back this test fails with the controller's fds 242 -> 1068 and RSS +70 MB), a
  thread, socket or file per message or per wake (fds and threads must stay flat: bench/soak's
  FD_ALLOWANCE / THREAD_ALLOWANCE);
- RSS growth beyond bench/soak.RSS_ALLOWANCE_MB over the measured part of the run;
- broker heap growth per wake beyond bench/soak.BROKER_HEAP_ALLOWANCE (nodes that SUBSCRIBE
  again on every wake grew mosquitto's heap ~230 B a wake; with that put back in the node this
  test fails);
- a registry table other than frames above the bound its settings allow (telemetry, events,
  finished commands);
- any frame lost, stored twice, without its file or with a wrong SHA-256 (exactly once).

Two minutes, not the three the issue asked for: the rest of the suite takes ~3.5 minutes and the
whole must stay well under 10; ~500 wakes already turn a per-wake leak of one fd into hundreds.
The 25-minute run is `bench/soak --minutes 25` (docs/performance.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MINUTES = 2.0


@pytest.mark.slow
@pytest.mark.timeout(int(MINUTES * 60) + 240)
def test_short_soak_shows_no_growth_and_exactly_once(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--minutes",
            str(MINUTES),
            "--sample-s",
            "5",
            "--workdir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=MINUTES * 60 + 200,
        check=False,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    analysis = doc["analysis"]
    assert analysis["violations"] == [], analysis["violations"]
    assert doc["exactly_once"]["ok"], doc["exactly_once"]
    # It soaked for real: hundreds of wakes, a frame stored and checked for each.
    assert analysis["wakes"] >= 100, analysis["wakes"]
    assert doc["exactly_once"]["index_rows"] >= analysis["wakes"]
    assert proc.returncode == 0, proc.stderr[-3000:]
