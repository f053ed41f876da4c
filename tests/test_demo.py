"""The README's main job: `camfleet demo` runs broker, controller, edge agents and ESP32 nodes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_stores_frames_from_every_kind_of_device_and_runs_a_queued_command(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "camfleet",
            "demo",
            "--duration",
            "10",
            "--cameras",
            "1",
            "--esp32",
            "2",
            "--http",
            "127.0.0.1:0",
            "--data",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    stored = int(re.search(r"done: (\d+) frames stored", out).group(1))  # type: ignore[union-attr]
    assert stored >= 5
    assert re.search(r"capture command c\w+ for sleeping node demo-esp32-0: done", out), out
    frames = tmp_path / "demo" / "controller" / "frames"
    devices = {p.name for p in frames.iterdir()}
    assert {"demo-cam-0", "demo-esp32-0", "demo-esp32-1"} <= devices
    assert all(p.read_bytes()[:2] == b"\xff\xd8" for p in frames.rglob("*.jpg"))
