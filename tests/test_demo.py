"""The README's main job: `camfleet demo` runs broker, controller, edge agents and ESP32 nodes."""

from __future__ import annotations

import json
import re
import socket
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
    # The status table: a header in words, then rows whose numbers end under their headings.
    from camfleet.demo import STATUS_HEADER

    lines = out.splitlines()
    assert "{" not in out and "'" not in out  # no Python dict anywhere
    rows = lines[lines.index(STATUS_HEADER) + 1 : lines.index("stopping ...")]
    assert rows
    header_ends = [m.end() for m in re.finditer(r"\S+(?: stored)?", STATUS_HEADER)][:7]
    for row in rows:
        cell_ends = [m.end() for m in re.finditer(r"\S+", row)][:7]
        assert cell_ends == header_ends, (STATUS_HEADER, row)


@pytest.mark.slow
def test_demo_json_prints_one_object_a_line_on_stdout_and_owns_its_data(tmp_path: Path) -> None:
    """Also: a second demo on the same --data (and port) is refused in one line while the first
    one runs, and wipes nothing of it; --duration N ends with a row at N s, not at the next
    five-second row."""
    data = tmp_path / "demo"
    first = subprocess.Popen(
        [
            *(sys.executable, "-m", "camfleet", "demo", "--json", "--duration", "6"),
            *("--cameras", "1", "--esp32", "0", "--http", "127.0.0.1:0"),
            *("--data", str(data)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None and first.stderr is not None
        started = [first.stderr.readline() for _ in range(2)]  # broker, then controller lines
        assert "controller  http://127.0.0.1:" in started[1], started
        second = subprocess.run(
            [sys.executable, "-m", "camfleet", "demo", "--data", str(data),
             "--http", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
        assert second.stderr.strip() == (
            f"camfleet: error: another demo is running from {data} (pid {first.pid}): stop it, "
            "or pass --data DIR"
        )
        assert (data / "controller" / "api-token").exists()
        out, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, out + err
    records = [json.loads(line) for line in out.splitlines()]
    assert records[-1]["done"]["frames_stored"] >= 1
    assert len(records) >= 2 and all("elapsed_s" in r for r in records[:-1])
    assert all(r["devices"] <= 1 and set(r["states"]) <= {"online"} for r in records[:-1])
    # The last row is the one at 6 s (plus the time its HTTP queries take), not the next
    # five-second row (10 s).
    assert 6 <= records[-2]["elapsed_s"] < 10, records


def test_demo_with_its_api_port_taken_says_so_before_wiping_anything(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    (data / "controller").mkdir(parents=True)
    (data / "controller" / "registry.sqlite3").write_bytes(b"kept")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "camfleet", "demo", "--data", str(data),
             "--http", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == (
        f"camfleet: error: the API address 127.0.0.1:{port} is not available (Address already "
        "in use): stop what uses it, or pass --http HOST:PORT"
    )
    assert (data / "controller" / "registry.sqlite3").read_bytes() == b"kept"


@pytest.mark.slow
def test_secure_demo_runs_on_the_prod_profile_with_enrolled_devices(tmp_path: Path) -> None:
    """--secure: TLS, no anonymous clients, each device its own identity and key. Frames from
    every kind of device are stored and receipted (the receipts are signed: nodes keep no
    spooled frame), the queued command runs, nothing is refused."""
    import sqlite3

    demo = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "camfleet", "demo", "--secure", "--duration", "10",
         "--cameras", "1", "--esp32", "2", "--http", "127.0.0.1:0", "--data", str(demo)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"mqtts://127\.0\.0\.1:\d+ for devices \(prod profile", out), out
    assert re.search(r"^broker      mqtt://127\.0\.0\.1:\d+ \(Mosquitto\)$", out, re.M), out
    assert re.search(r"capture command c\w+ for sleeping node demo-esp32-0: done", out), out
    db = sqlite3.connect(demo / "controller" / "registry.sqlite3")
    stored = dict(db.execute("SELECT device_id, COUNT(*) FROM frames GROUP BY device_id"))
    assert {"demo-cam-0", "demo-esp32-0", "demo-esp32-1"} <= set(stored), stored
    refused = db.execute("SELECT COUNT(*) FROM events WHERE type = 'signature_refused'")
    assert refused.fetchone() == (0,)
    keys = {row[0] for row in db.execute("SELECT device_id FROM ota_device_keys")}
    assert keys == {"demo-cam-0", "demo-esp32-0", "demo-esp32-1"}
    for node in ("demo-esp32-0", "demo-esp32-1"):
        assert not list((demo / "esp32" / node / "fs" / "spool").glob("*.f")), node
    conf = (demo / "broker-prod" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf


def test_demo_names_the_controllers_own_reason_when_it_exits_at_start_up(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    data.mkdir()
    (data / "controller").write_text("a file where the controller's directory goes")
    result = subprocess.run(
        [sys.executable, "-m", "camfleet", "demo", "--data", str(data), "--keep",
         "--http", "127.0.0.1:0", "--cameras", "0", "--esp32", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"camfleet: error: the controller exited at start-up: cannot use data directory "
        f"{data / 'controller'}: "
    ), lines
    assert lines[0].endswith(f"(see {data / 'logs' / 'controller.log'})"), lines
