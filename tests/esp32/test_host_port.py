"""The host port behaves as the ESP32 documents say: NVS commit semantics, missing keys raise
OSError, partitions are block devices over persistent flash, RTC memory survives deep sleep but
not a power cut. Run under real MicroPython."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camfleet.esp32_node.tools import hostdevice
from camfleet.esp32_node.tools.hostdevice import HostDevice

SCRIPT = Path(__file__).parents[1] / "mp" / "host_port_check.py"


@pytest.fixture
def dev(tmp_path: Path) -> HostDevice:
    d = HostDevice(tmp_path / "probe", "probe")
    d.provision(broker_host="127.0.0.1", broker_port=1, jpegs=[b"\xff\xd8\xff\xd9"])
    return d


def _run(dev: HostDevice, phase: str, cause: str = "ext1"):
    # the script takes the phase as its last argument: a wrapper file per phase keeps it simple
    wrapper = dev.dir / "fs" / f"probe_{phase}.py"  # not next to camera/: a namespace package
    wrapper.write_text(
        f"import sys\nsys.argv.append({phase!r})\nexec(open({str(SCRIPT)!r}).read())\n"
    )
    return dev.run_wake(cause, script=wrapper)


def test_nvs_rtc_and_partitions_across_deep_sleep_and_power_cut(dev: HostDevice):
    wrote = _run(dev, "write")
    assert wrote.ended == "deepsleep" and wrote.sleep_ms == 5000

    after_sleep = _result(_run(dev, "read"))
    assert after_sleep["reset_cause"] == 4 and after_sleep["wake_reason"] == 3  # DEEPSLEEP, EXT1
    assert after_sleep["kept"] == 42
    assert after_sleep["missing_errno"] == -4354  # the uncommitted key is gone: NVS_NOT_FOUND
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


def test_host_modules_reject_what_the_real_ones_reject(tmp_path: Path):
    d = HostDevice(tmp_path / "strict", "strict")
    # one 640x480 frame of 70,000 bytes: larger than any buffer below VGA's 61,440
    d.provision(broker_host="127.0.0.1", broker_port=1, jpegs=[b"\xff\xd8" + b"\0" * 70_000])
    out = _result(_run(d, "strict", cause="timer"))
    assert out["ext0_gpio16"] == ["ValueError", "invalid pin"]  # not an RTC GPIO
    assert out["ext1_gpio5"] == ["ValueError", "invalid pin"]
    assert out["touch_with_ext0"] == ["ValueError", "no resources"]
    assert out["ulp_with_ext0"] == ["ValueError", "no resources"]
    assert out["touchpad_gpio5"] == ["ValueError", "invalid pin for touchpad"]
    assert out["pin_20"] == ["ValueError", "invalid pin"]  # the ESP32 has no GPIO 20
    assert out["partial_sector"] == ["OSError", -0x104, "ESP_ERR_INVALID_SIZE"]
    assert out["nor_write"] == 0x03  # 0x0f & 0xf3
    assert out["set_boot_garbage"] == ["OSError", -0x1503, "ESP_ERR_OTA_VALIDATE_FAILED"]
    assert out["ulp_bad_magic"] == ["OSError", 95]  # ESP_ERR_NOT_SUPPORTED -> EOPNOTSUPP
    assert out["unique_id"] == [0x24, 0x0A, 0xC4, 0x00, 0x00, 0x01]  # 6 raw bytes
    assert out["capture_before_init"] is False and out["framesize_before_init"] is False
    assert out["init_positional"][0] == "TypeError"
    assert out["init_unknown_kw"] == ["TypeError", "unexpected keyword argument 'framesize_max'"]
    assert out["init_dram_uxga"] == ["OSError", "Camera Init Failed"]  # DRAM holds up to CIF
    assert out["init_defaults"] == ["OSError", "Camera Init Failed"]  # VGA, DRAM by default
    defaults = out["defaults"]
    assert (defaults["framesize"], defaults["xclk_freq"], defaults["quality"]) == (
        8,  # FRAME_VGA
        10_000_000,
        12,
    )
    assert (defaults["fb_size"], defaults["fb_location"]) == (1, 0)  # one buffer, PSRAM asked
    assert out["second_init"] == ["OSError", "Camera Init Failed"]
    assert out["ovf"] is False  # FB-OVF: the frame does not fit the VGA buffer


def test_set_boot_accepts_a_valid_image_only(tmp_path: Path):
    from camfleet.esp32_node.tools.images import make_app_image

    d = HostDevice(tmp_path / "boot", "boot")
    d.provision(broker_host="127.0.0.1", broker_port=1, jpegs=[b"\xff\xd8\xff\xd9"])
    image = bytearray(make_app_image("2.0.0"))
    (d.dir / "flash" / "ota_1.bin").write_bytes(bytes(image))
    script = d.dir / "boot_check.py"
    script.write_text(
        "import esp32\nesp32.Partition('ota_1').set_boot()\nprint('RESULT {\"ok\": 1}')\n"
    )
    assert _result(d.run_wake(script=script)) == {"ok": 1}
    image[len(image) // 2] ^= 0x01  # one bit flipped in a segment: checksum and hash differ
    (d.dir / "flash" / "ota_1.bin").write_bytes(bytes(image))
    assert "ESP_ERR_OTA_VALIDATE_FAILED" in d.run_wake(script=script).output


def test_node_modules_load_as_bytecode_like_frozen_firmware(dev: HostDevice):
    # as on the chip (frozen bytecode), not compiled from source into the heap at each import
    probe = dev.dir / "fs" / "probe_files.py"
    probe.write_text(
        "import json, node, wake, camctl\n"
        "print('RESULT', json.dumps([node.__file__, wake.__file__, camctl.__file__]))\n"
    )
    files = _result(dev.run_wake(script=probe))
    assert [Path(f).name for f in files] == ["node.mpy", "wake.mpy", "camctl.mpy"]


def test_compiled_node_follows_its_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    node = tmp_path / "node"
    node.mkdir()
    (node / "main.py").write_text("import app\n")
    (node / "app.py").write_text("X = 1\n")
    monkeypatch.setattr(hostdevice, "NODE_DIR", node)
    cache = tmp_path / "tmp"
    cache.mkdir()
    monkeypatch.setattr(hostdevice.tempfile, "tempdir", str(cache))  # not an earlier run's
    first = hostdevice.compiled_node_dir()
    assert sorted(p.name for p in first.iterdir()) == ["app.mpy", "main.py"]
    assert hostdevice.compiled_node_dir() == first  # unchanged sources: compiled once
    (node / "app.py").write_text("X = 2\n")
    second = hostdevice.compiled_node_dir()
    assert second != first and (second / "app.mpy").read_bytes() != (first / "app.mpy").read_bytes()
    (node / "app.py").write_text("X = (\n")
    with pytest.raises(RuntimeError, match=r"mpy-cross app.py: .*app.py\", line 2 SyntaxError"):
        hostdevice.compiled_node_dir()
