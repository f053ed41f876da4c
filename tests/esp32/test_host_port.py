"""The host port behaves as the ESP32 documents say: NVS commit semantics, missing keys raise
OSError, partitions are block devices over persistent flash, RTC memory survives deep sleep but
not a power cut. Run under real MicroPython."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camfleet.esp32_node.tools.hostdevice import HostDevice

SCRIPT = Path(__file__).parents[1] / "mp" / "host_port_check.py"


@pytest.fixture
def dev(tmp_path: Path) -> HostDevice:
    d = HostDevice(tmp_path / "probe", "probe")
    d.provision(broker_host="127.0.0.1", broker_port=1, jpegs=[b"\xff\xd8\xff\xd9"])
    return d


def _run(dev: HostDevice, phase: str):
    # the script takes the phase as its last argument: a wrapper file per phase keeps it simple
    wrapper = dev.dir / f"probe_{phase}.py"
    wrapper.write_text(
        f"import sys\nsys.argv.append({phase!r})\nexec(open({str(SCRIPT)!r}).read())\n"
    )
    return dev.run_wake("ext1", script=wrapper)


def test_nvs_rtc_and_partitions_across_deep_sleep_and_power_cut(dev: HostDevice):
    wrote = _run(dev, "write")
    assert wrote.ended == "deepsleep" and wrote.sleep_ms == 5000

    after_sleep = _result(_run(dev, "read"))
    assert after_sleep["reset_cause"] == 4 and after_sleep["wake_reason"] == 3  # DEEPSLEEP, EXT1
    assert after_sleep["kept"] == 42
    assert after_sleep["missing_errno"] == 2  # the uncommitted key is gone: ENOENT
    assert after_sleep["rtc"] == "rtc-data"
    assert (after_sleep["block2"], after_sleep["block3"]) == (0xAB, 0xFF)
    assert after_sleep["ota_1"] == [0x1C0000, 0x1A0000, "ota_1"]
    assert (after_sleep["running"], after_sleep["next"]) == ("ota_0", "ota_1")

    # "read" ends without deep sleep or reset: the process just stops, like a power cut
    after_cut = _result(_run(dev, "read"))
    assert after_cut["reset_cause"] == 1 and after_cut["wake_reason"] == 0
    assert after_cut["rtc"] == ""  # RTC slow memory does not survive losing power
    assert after_cut["kept"] == 42 and after_cut["block2"] == 0xAB  # flash does


def _result(wake) -> dict:
    line = next((x for x in wake.output.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, wake.output
    return json.loads(line[len("RESULT ") :])
