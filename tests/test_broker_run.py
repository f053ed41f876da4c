"""``camfleet broker run`` ends with an error when its mosquitto dies (issue 9, defect 7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from camfleet.mosquitto import free_port


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:  # field 4: ppid
                out.append(int(entry.name))
    return out


def test_broker_run_exits_with_an_error_when_mosquitto_is_killed(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "camfleet", "broker", "run", "--port", str(port),
         "--data", str(tmp_path / "b")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert f"mqtt://127.0.0.1:{port}" in proc.stdout.readline()
        (child,) = _children(proc.pid)
        os.kill(child, signal.SIGKILL)
        assert proc.wait(60) != 0
        assert proc.stderr is not None
        err = proc.stderr.read().strip().splitlines()
        assert len(err) == 1 and "mosquitto exited unexpectedly" in err[0], err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
