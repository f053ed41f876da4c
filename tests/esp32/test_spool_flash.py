"""The node's flash spool on a real LittleFS v2 (MicroPython's own, over a RAM block device that
logs every program and erase): a power cut after any flash operation leaves the new frame
either absent or whole, and the frame is on flash when ``add`` returns.

Why this and not a recorded ``fsync``: the MicroPython port has no fsync (and the ESP32 port's
``os.sync`` only flushes caches the VFS already flushes on close); on LittleFS a file's data is
committed when the file is closed and a rename is one atomic metadata commit. So the test checks
the flash itself at every step, which covers both."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from camfleet.esp32_node.tools.hostdevice import MICROPYTHON, NODE_DIR

SCRIPT = Path(__file__).parents[1] / "mp" / "spool_flash_check.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    """The script's findings (one MicroPython run for the module's tests)."""
    tmp_path = tmp_path_factory.mktemp("flash")
    proc = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=8M", str(SCRIPT)],
        cwd=tmp_path,
        env={"MICROPYPATH": f"{NODE_DIR}:.frozen"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stdout + proc.stderr
    return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]


def test_a_power_cut_at_any_flash_write_leaves_the_frame_absent_or_whole(result: dict) -> None:  # type: ignore[type-arg]
    """Catches writing the frame under its final name (a cut shows a short file), renaming before
    the file is closed, no rename at all (the frame is not there when ``add`` returns), and a
    receipt's deletion that is not on flash when ``apply_receipt`` returns."""
    add = result["add"]
    assert len(add) > 10  # the write really went through many flash operations
    assert set(add) == {"none", "whole"}, add
    first_whole = add.index("whole")
    assert add[first_whole:] == ["whole"] * (len(add) - first_whole), add
    assert add[-1] == "whole"  # durable when add() returned
    assert result["deleted"] == 1
    assert result["receipt"][0] == "whole" and result["receipt"][-1] == "none", result["receipt"]


def test_the_spool_is_bounded_by_bytes_and_by_count_dropping_the_oldest(result: dict) -> None:  # type: ignore[type-arg]
    """Catches a bound compared off by one, bytes counted wrongly, or the newest dropped."""
    assert result["drops"] == [[], [], [], [[2, 1]], [[2, 2]], [[2, 3], [2, 4]]]
    depth, total, after_count, keys, has_new, has_dropped = result["bounded"]
    assert (depth, total) == (3, 3 * 1022)
    assert (after_count, keys, has_new, has_dropped) == (2, [[2, 5], [2, 6]], True, False)


def test_the_highest_spooled_session_is_the_next_sessions_floor(result: dict) -> None:  # type: ignore[type-arg]
    """Spooled frames of sessions 2, 3 and 5 (the last one at seq 2); then none. Catches
    ``max_session`` reading another entry or the seq: after a power cut wipes RTC memory the
    node would number its new session at or below one whose frames are still spooled, and its
    new frames would collide with them (same session and seq)."""
    assert result["sessions"] == [5, 0]
