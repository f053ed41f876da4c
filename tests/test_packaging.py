"""A built wheel installs in a clean venv and works without the source tree."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_in_a_clean_venv_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("camfleet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "camfleet/cli.py",
        "camfleet/proto/codec.py",
        "camfleet/proto/v1/frame_pb2.py",
        "camfleet/proto/camfleet/v1/frame.proto",
        "camfleet/broker_config/dev.conf",
    ):
        assert expected in names, f"{expected} missing from the wheel"
    assert not any(n.startswith(("tests/", "proto/", "controller/")) for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True
    )
    # Run from an empty directory so nothing of the source tree can be imported by accident.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    help_out = subprocess.run(
        [str(env_dir / "bin" / "camfleet"), "--help"],
        check=True,
        capture_output=True,
        text=True,
        cwd=elsewhere,
    ).stdout
    assert "controller" in help_out and "edge" in help_out
    probe = subprocess.run(
        [
            str(py),
            "-c",
            "import camfleet.proto, camfleet.proto.v1.frame_pb2 as f; "
            "print(camfleet.proto.__file__); print(f.Frame(seq=3).seq)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=elsewhere,
    ).stdout.split()
    assert probe[0].startswith(str(env_dir)) and probe[1] == "3"
