"""A built wheel carries everything and installs in a clean venv that has only the runtime
dependencies: every sub-command starts there, so no hardware or dev library is imported eagerly."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE = ROOT / "esp32_node"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
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
        cwd=dist,
    )
    (built,) = dist.glob("camfleet-*.whl")
    return built


def test_wheel_ships_every_package_and_the_node_files_the_simulator_runs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = [
        "camfleet/cli.py",
        "camfleet/proto/codec.py",
        "camfleet/proto/v1/frame_pb2.py",
        "camfleet/proto/camfleet/v1/frame.proto",
        "camfleet/broker_config/dev.conf",
        "camfleet/broker_config/common.conf",
        "camfleet/broker_config/prod.conf",
        "camfleet/controller/service.py",
        "camfleet/edge/agent.py",
        "camfleet/esp32_node/firmware/partitions.csv",
    ]
    needed += [f"camfleet/esp32_node/{p.name}" for p in NODE.glob("*.py")]
    needed += [f"camfleet/esp32_node/host/{p.name}" for p in (NODE / "host").glob("*.py")]
    needed += [f"camfleet/esp32_node/tools/{p.name}" for p in (NODE / "tools").glob("*.py")]
    missing = [n for n in needed if n not in names]
    assert not missing, f"missing from the wheel: {missing}"
    assert not any(n.startswith(("tests/", "proto/", "controller/", "edge/")) for n in names)


@pytest.mark.slow
def test_wheel_installs_in_a_clean_venv_and_every_subcommand_starts(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True
    )
    # Run from an empty directory so nothing of the source tree can be imported by accident.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def camfleet(*args: str) -> str:
        result = subprocess.run(
            [str(env_dir / "bin" / "camfleet"), *args],
            capture_output=True,
            text=True,
            cwd=elsewhere,
            check=False,
        )
        assert result.returncode == 0, f"camfleet {' '.join(args)}: {result.stderr}"
        assert "unavailable" not in result.stdout, result.stdout
        return result.stdout

    assert "controller" in camfleet("--help")
    for args in (
        ("controller", "run", "--help"),
        ("edge", "run", "--help"),
        ("sim", "esp32", "--help"),
        ("demo", "--help"),
        ("devices", "--help"),
        ("proto", "watch", "--help"),
        ("broker", "run", "--help"),
    ):
        assert "Usage:" in camfleet(*args)
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


def test_every_package_data_glob_in_setup_py_matches_a_file() -> None:
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text())
    areas = next(
        ast.literal_eval(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "AREAS"
    )
    package_data = next(
        ast.literal_eval(k.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        for k in n.keywords
        if k.arg == "package_data"
    )

    def folder(package: str) -> Path:
        # a sub-package (camfleet.controller.web) lives under its area's folder
        area = max((a for a in areas if package == a or package.startswith(a + ".")), key=len)
        return ROOT / areas[area] / package[len(area) :].lstrip(".").replace(".", "/")

    empty = [
        (package, pattern)
        for package, patterns in package_data.items()
        for pattern in patterns
        if not list(folder(package).glob(pattern))
    ]
    assert not empty, f"package_data globs that match nothing: {empty}"
