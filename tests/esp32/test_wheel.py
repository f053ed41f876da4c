"""A built wheel carries what the simulator needs to run the node without the source tree:
every node module, the host port and the partition table (setup.py ships them as data)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "esp32_node"


def test_wheel_ships_node_host_port_and_partition_table(tmp_path):
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("-q", "-w", str(tmp_path), str(ROOT)),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("camfleet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = [f"camfleet/esp32_node/{p.name}" for p in NODE.glob("*.py")]
    needed += [f"camfleet/esp32_node/host/{p.name}" for p in (NODE / "host").glob("*.py")]
    needed += [f"camfleet/esp32_node/tools/{p.name}" for p in (NODE / "tools").glob("*.py")]
    needed.append("camfleet/esp32_node/firmware/partitions.csv")
    missing = [n for n in needed if n not in names]
    assert not missing, f"missing from the wheel: {missing}"
