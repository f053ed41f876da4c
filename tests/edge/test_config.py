"""Config file validation: every mistake is one clear line naming the file and the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camfleet.edge.config import load_config
from camfleet.errors import UserError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "edge" / "edge.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_example_config_loads_with_documented_defaults():
    cfg = load_config(EXAMPLE)
    assert cfg.device.id == "garden-cam"
    assert cfg.camera.backend == "synthetic"
    assert (cfg.camera.settings.width, cfg.camera.settings.height) == (640, 480)
    assert cfg.spool.max_bytes == 512 * 1024**2 and cfg.spool.fsync
    assert cfg.broker.max_payload == 131072 and cfg.client_id == "camfleet-edge-garden-cam"
    # It captures, and keeps its state out of the source tree (in the user's state directory).
    assert cfg.schedule.interval_s > 0
    assert cfg.agent.state_dir == Path(os.environ["XDG_STATE_HOME"], "camfleet/edge/garden-cam")
    assert not cfg.agent.state_dir.is_relative_to(REPO)


def test_minimal_config_fills_defaults(tmp_path):
    cfg = load_config(write(tmp_path, '[device]\nid = "a"\n'))
    assert cfg.camera.backend == "synthetic" and str(cfg.broker.url) == "mqtt://127.0.0.1:1883"
    assert cfg.schedule.interval_s == 0 and not cfg.schedule.cron
    state = Path(os.environ["XDG_STATE_HOME"], "camfleet", "edge", "a")
    assert cfg.agent.state_dir == state and cfg.spool.dir == state / "spool"


def test_defaults_are_the_section_dataclasses_defaults(tmp_path):
    from dataclasses import MISSING, fields

    cfg = load_config(write(tmp_path, '[device]\nid = "a"\n'))
    for section in ("device", "broker", "frames", "spool", "schedule", "agent"):
        value = getattr(cfg, section)
        for f in fields(value):
            if f.default is not MISSING:
                assert getattr(value, f.name) == f.default, (section, f.name)


def test_a_relative_state_dir_is_relative_to_the_config_file(tmp_path):
    cfg = load_config(write(tmp_path, '[device]\nid = "a"\n[agent]\nstate_dir = "st"\n'))
    assert cfg.agent.state_dir == tmp_path / "st" and cfg.spool.dir == tmp_path / "st" / "spool"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "device.id: is required"),
        ('[device]\nid = "Cam 1"\n', "device.id: invalid device id 'Cam 1'"),
        ('[device]\nid = "a"\n[camera]\nbackend = "gopro"\n', "camera.backend: unknown camera"),
        (
            '[device]\nid = "a"\n[camera]\njpeg_quality = 120\n',
            "jpeg_quality=120 is outside 1..100",
        ),
        ('[device]\nid = "a"\n[camera]\nwidth = 640\n', "width and height must be given together"),
        ('[device]\nid = "a"\n[camera]\nrotation = 45\n', "rotation=45 must be one of"),
        ('[device]\nid = "a"\n[camera]\nwhite_balance = "purple"\n', "white_balance = 'purple'"),
        ('[device]\nid = "a"\n[camera]\nhflip = "yes"\n', "camera.hflip = 'yes'"),
        ('[device]\nid = "a"\n[camera]\nzoom = 2\n', "unknown camera setting camera.zoom"),
        ('[device]\nid = "a"\n[camra]\nwidth = 1\n', "unknown key camra"),
        ('[device]\nid = "a"\nname = "x"\n', "unknown key device.name"),
        ('[device]\nid = "a"\n[broker]\nurl = "http://x"\n', "broker.url: "),
        ('[device]\nid = "a"\n[broker]\nkeepalive_s = 1\n', "broker.keepalive_s: 1 is outside"),
        ('[device]\nid = "a"\n[spool]\nmax_bytes = "lots"\n', "spool.max_bytes: 'lots' is not"),
        ('[device]\nid = "a"\n[schedule]\ncron = "every day"\n', "schedule.cron: cron 'every"),
        ('[device]\nid = "a"\n[schedule]\ninterval_s = 5\ncron = "* * * * *"\n', "not both"),
        ('[device]\nid = "a"\n[schedule]\ninterval_s = -1\n', "schedule.interval_s: -1"),
        ('[device]\nid = "a"\n[frames]\nencoder = "gif"\n', "frames.encoder: 'gif'"),
        ('[device\nid = "a"\n', "invalid TOML"),
        ("device = 3\n", "device: must be a table"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert expected in message
    assert message.startswith(str(path)) and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")


def test_sizes_accept_units(tmp_path):
    cfg = load_config(write(tmp_path, '[device]\nid = "a"\n[spool]\nmax_bytes = "2MiB"\n'))
    assert cfg.spool.max_bytes == 2 * 1024**2
    cfg = load_config(write(tmp_path, '[device]\nid = "a"\n[spool]\nmax_bytes = "3 GB"\n'))
    assert cfg.spool.max_bytes == 3 * 1000**3


def camfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camfleet", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_check_config_reports_one_line_without_traceback(tmp_path):
    bad = write(tmp_path, '[device]\nid = "a"\n[camera]\nbackend = "gopro"\n')
    result = camfleet("edge", "check-config", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith("camfleet: error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = camfleet("edge", "run", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2 and "cannot read config file" in result.stderr


def test_cli_check_config_json(tmp_path):
    result = camfleet("edge", "check-config", "--config", str(EXAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["device"]["id"] == "garden-cam"
    assert data["camera"]["settings"]["jpeg_quality"] == 85


def test_missing_camera_library_names_the_package(tmp_path):
    # picamera2 is not installed on this machine (no Raspberry Pi): the error says what to do.
    path = write(tmp_path, '[device]\nid = "a"\n[camera]\nbackend = "picamera2"\n')
    result = camfleet("edge", "check-config", "--config", str(path), "--open-camera")
    assert result.returncode == 2
    assert "picamera2" in result.stderr and "pip install 'camfleet[pi]'" in result.stderr


def test_cli_lists_backends_without_importing_camera_libraries():
    result = camfleet("edge", "backends", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == sorted(
        ["synthetic", "folder", "opencv", "picamera2", "picamera", "maix"]
    )
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from camfleet.edge.cli import edge; from camfleet.edge.agent import "
            "EdgeAgent; print(sorted(m for m in ('cv2', 'picamera2', 'picamera', 'maix', "
            "'simplejpeg') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "[]", probe.stderr


def test_cli_check_config_open_camera_failure_is_one_line(tmp_path):
    path = write(
        tmp_path,
        '[device]\nid = "a"\n[camera]\nbackend = "folder"\n[camera.options]\npath = "/none"\n',
    )
    result = camfleet("edge", "check-config", "--config", str(path), "--open-camera")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "camera: folder camera: /none is not a directory" in result.stderr


def test_cli_status_reads_the_spool_without_touching_it(tmp_path):
    from camfleet.edge.spool import Spool
    from camfleet.proto import codec

    path = write(tmp_path, '[device]\nid = "a"\n[agent]\nstate_dir = "state"\n')
    spool = Spool(tmp_path / "state" / "spool", max_frames=10, max_bytes=10**6)
    for seq in (1, 2, 3):
        spool.put(codec.make_frame(b"jpeg", session=7, seq=seq))
    leftover = spool.directory / ".tmp-0000000007-0000000004.frame"
    leftover.write_bytes(b"an agent is writing this")
    result = camfleet("edge", "status", "--config", str(path), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["spool_frames"], info["oldest"], info["newest"]) == (3, "7-1", "7-3")
    assert leftover.exists()  # read-only: a running agent's write is not disturbed
    text = camfleet("edge", "status", "--config", str(path)).stdout
    assert "3 frame(s)" in text and "oldest 7-1" in text
