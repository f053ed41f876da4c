"""The board definition gives the camera driver and the build what they need (no ESP-IDF here:
the files are read and parsed, as a reviewer with the driver's own ESP32_CAM board would).

What lemariva's micropython-camera-driver and MicroPython v1.22.2 require of a board:
- modcamera.c is wrapped in ``#if MODULE_CAMERA_ENABLED``; its CMake file defines nothing, so
  the board header must (the driver's ESP32_CAM board defines it to 1);
- v1.22.2's mpconfigport.h enables Bluetooth unless the board sets MICROPY_PY_BLUETOOTH to 0,
  and then needs boards/sdkconfig.ble: a board without that sdkconfig must turn BLE off;
- the node must run after a plain flash: main.py frozen with every module it imports;
- the sources pinned to exact commits (the driver's README: "MicroPython changes a lot").
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

NODE = Path(__file__).parents[2] / "esp32_node"
FIRMWARE = NODE / "firmware"
BOARD = FIRMWARE / "boards" / "CAMFLEET_CAM"


def _defines(header: str) -> dict[str, str]:
    out = {}
    for line in header.splitlines():
        m = re.match(r"\s*#define\s+(\w+)\s+(.*?)\s*(//.*)?$", line)
        if m:
            out[m.group(1)] = m.group(2).strip("()")
    return out


def _cmake_list(text: str, name: str) -> list[str]:
    m = re.search(r"set\(\s*" + name + r"\s+(.*?)\)", text, re.S)
    assert m, f"{name} is not set"
    return m.group(1).split()


def _sdkconfig(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("CONFIG_"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


def test_board_header_enables_the_camera_module_and_disables_bluetooth():
    defines = _defines((BOARD / "mpconfigboard.h").read_text())
    assert defines.get("MODULE_CAMERA_ENABLED") == "1"
    assert defines.get("MICROPY_PY_BLUETOOTH") == "0"
    assert "MICROPY_HW_BOARD_NAME" in defines and "MICROPY_HW_MCU_NAME" in defines


def test_sdkconfig_defaults_match_the_header():
    cmake = (BOARD / "mpconfigboard.cmake").read_text()
    defaults = _cmake_list(cmake, "SDKCONFIG_DEFAULTS")
    assert defaults[0] == "boards/sdkconfig.base"
    assert "boards/sdkconfig.spiram" in defaults  # frame buffers and the heap live in PSRAM
    assert "${MICROPY_BOARD_DIR}/sdkconfig.camfleet" in defaults
    # Bluetooth off in the header <=> no NimBLE settings loaded
    assert "boards/sdkconfig.ble" not in defaults
    features = json.loads((BOARD / "board.json").read_text())["features"]
    assert "BLE" not in features and "Camera" in features
    assert _cmake_list(cmake, "MICROPY_FROZEN_MANIFEST") == ["${MICROPY_BOARD_DIR}/manifest.py"]


def test_sdkconfig_camfleet_has_the_camera_psram_partitions_and_rollback():
    cfg = _sdkconfig(FIRMWARE / "sdkconfig.camfleet")
    assert cfg["CONFIG_OV2640_SUPPORT"] == "y"
    assert cfg["CONFIG_SPIRAM"] == "y"
    assert cfg["CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE"] == "y"
    assert cfg["CONFIG_PARTITION_TABLE_CUSTOM"] == "y"
    table = cfg["CONFIG_PARTITION_TABLE_CUSTOM_FILENAME"].strip('"')
    build = (FIRMWARE / "build.sh").read_text()
    assert f"partitions.csv {table}" in build  # build.sh puts the table where IDF looks
    # the ULP wake needs the co-processor that sdkconfig.base enables: never switched off here
    assert cfg.get("CONFIG_ULP_COPROC_ENABLED", "y") == "y"


def test_build_pins_exact_commits_and_uses_the_cmake_user_module():
    build = (FIRMWARE / "build.sh").read_text()
    pins = dict(re.findall(r'^(\w+_COMMIT)="([^"]*)"', build, re.M))
    assert set(pins) == {"MICROPYTHON_COMMIT", "CAMERA_DRIVER_COMMIT", "ESP32_CAMERA_COMMIT"}
    for name, sha in pins.items():
        assert re.fullmatch(r"[0-9a-f]{40}", sha), f"{name} is not a commit: {sha}"
        assert f"${name}" in build  # and it is the one checked out
    assert "--branch" not in build and "master" not in build.split("docker run")[1]
    assert "USER_C_MODULES=/build/micropython-camera-driver/src/micropython.cmake" in build
    for copied in ("sdkconfig.camfleet", "manifest.py"):
        assert f"/camfleet/esp32_node/firmware/{copied}" in build


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            names.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            names.add(n.module)
    return names


def test_manifest_freezes_main_and_everything_it_imports():
    tree = ast.parse((FIRMWARE / "manifest.py").read_text())
    listed = next(
        ast.literal_eval(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "NODE_MODULES"
    )
    node_modules = {p.stem for p in NODE.glob("*.py") if p.name != "__init__.py"}
    needed, todo = set(), ["main"]
    while todo:
        mod = todo.pop()
        if mod in needed:
            continue
        needed.add(mod)
        todo += [m for m in _imports(NODE / f"{mod}.py") if m in node_modules]
    assert "main" in needed and "ulp_pir" in needed and "camctl" in needed
    assert sorted(listed) == sorted(f"{m}.py" for m in needed)
