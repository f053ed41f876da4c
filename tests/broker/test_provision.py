"""`camfleet provision esp32` end to end: esptool against esp32-mock-bootloader (the ROM
bootloader's protocol over socket://), then the simulated node boots from the very NVS image that
was flashed and verified, and connects over TLS with the enrolled identity."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from camfleet.broker_config.profiles import ConfiguredMosquitto
from camfleet.esp32_node.tools.hostdevice import HostDevice
from camfleet.esp32_node.tools.images import make_app_image
from camfleet.mosquitto import free_port
from camfleet.proto.v1 import state_pb2
from camfleet.testing.esp32_receiver import Receiver
from tests.broker.conftest import key_of
from tests.esp32.conftest import jpeg

MOCK = str(Path(sys.executable).parent / "esp32-mock-bootloader")


@pytest.fixture
def serial_port() -> Iterator[str]:
    """A mock ESP32 ROM bootloader on a free TCP port; esptool reaches it as socket://."""
    port = free_port()
    proc = subprocess.Popen(
        [MOCK, "run", "--port", str(port), "--chip", "esp32"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "Mock bootloader (chip=esp32) listening on 127.0.0.1:PORT"
    assert "listening on" in first, first
    yield f"socket://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(60)


def provision(
    tmp_path: Path, broker: ConfiguredMosquitto, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camfleet", "provision", "esp32", *args,
         "--broker-config", str(broker.workdir), "--data", str(tmp_path / "data"),
         "--out", str(tmp_path / "devices"), "--broker-host", "127.0.0.1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_provision_flashes_verifies_and_the_node_boots_from_that_nvs(
    tmp_path: Path, prod: ConfiguredMosquitto, serial_port: str
) -> None:
    firmware = tmp_path / "camfleet-node-2.0.0.bin"
    firmware.write_bytes(make_app_image("2.0.0", 64 * 1024))
    run = provision(tmp_path, prod, "--port", serial_port, "--device-id", "gate-1",
                    "--firmware", str(firmware), "--wifi-ssid", "lab")  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    steps = [line for line in run.stdout.splitlines() if line.startswith("[")]
    assert [s[:5] for s in steps] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    # esptool's own verdicts: each of the four regions written, then compared with its file
    assert run.stdout.count("Verification successful (digest matched).") >= 4
    folder = tmp_path / "devices" / "gate-1"
    assert {p.name for p in folder.iterdir()} >= {"nvs.bin", "partitions.bin", "app.bin"}

    node = HostDevice(tmp_path / "node", "gate-1")
    node.provision(broker_host="unused", broker_port=1, jpegs=[jpeg(seed=3)])
    node.load_nvs_image((folder / "nvs.bin").read_bytes())  # the image verify-flash compared
    key = key_of(tmp_path / "data", "gate-1")
    assert key is not None
    ctl = prod.broker_dir.url("controller")
    rx = Receiver(prod.host, prod.port, "gate-1", device_key=key,
                  username=ctl.username, password=ctl.password).start()  # fmt: skip
    try:
        woke = node.run_wake()
        assert woke.ended == "deepsleep", woke.output
        assert rx.of("state")[0].presence == state_pb2.PRESENCE_ONLINE
        assert (1, 1) in rx.frames
        assert node.spool_files() == []  # its receipt was signed with the enrolled key
        assert not [e for e in rx.of("event") if e.type == "signature_refused"]
    finally:
        rx.close()
        node.cut_power()


def test_a_missing_port_or_a_damaged_firmware_is_one_line_and_enrols_nothing(
    tmp_path: Path, prod: ConfiguredMosquitto
) -> None:
    closed = f"socket://127.0.0.1:{free_port()}"
    run = provision(tmp_path, prod, "--port", closed, "--device-id", "gate-2")
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        f"camfleet: error: cannot open {closed}: the port is busy or does not exist"
    ]
    damaged = bytearray(make_app_image("2.0.0", 8192))
    damaged[200] ^= 0xFF
    firmware = tmp_path / "damaged.bin"
    firmware.write_bytes(bytes(damaged))
    run = provision(tmp_path, prod, "--port", closed, "--device-id", "gate-2",
                    "--firmware", str(firmware))  # fmt: skip
    assert run.stderr.strip().splitlines() == [
        f"camfleet: error: {firmware} is damaged: its checksum or SHA-256 does not match"
    ]
    assert key_of(tmp_path / "data", "gate-2") is None
    assert not (tmp_path / "devices" / "gate-2").exists()
