"""The ULP program: firmware/ulp/pir.S, assembled here by micropython-esp32-ulp (the pinned sdist
scripts/setup unpacks, under the MicroPython unix port), is a loadable ESP32 ULP-FSM binary that
does what the node relies on: the header ulp_load_binary checks, the data words the node fills,
the entry point it starts, a read of the RTC GPIO inputs, and a wake of the chip that also stops
the ULP timer; and it is the binary the node loads (esp32_node/ulp_pir.py, written by
scripts/ulp). The instruction encodings are those of Espressif's "ULP Coprocessor Instruction
Set" (ESP32): opcode in bits 31..28."""

from __future__ import annotations

import ast
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import pytest

from camfleet.esp32_node.tools import ulp_asm

NODE = Path(__file__).parents[2] / "esp32_node"

RESERVE_MEM = 2040  # CONFIG_ULP_COPROC_RESERVE_MEM of MicroPython v1.22.2's sdkconfig.base
RTC_CNTL_BASE = 0x3FF48000  # ULP register addresses count 32-bit words from here
OP_WR_REG, OP_RD_REG, OP_END, OP_HALT = 1, 2, 9, 11


def _module() -> dict[str, object]:
    """The constants of ulp_pir.py, read without importing it (it imports esp32/machine)."""
    out: dict[str, object] = {}
    for node in ast.parse((NODE / "ulp_pir.py").read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


@pytest.fixture(scope="module")
def binary() -> bytes:
    """pir.S as it is, assembled now (~0.2 s)."""
    return ulp_asm.assemble()


def _reg(word: int) -> tuple[int, int, int]:
    """(register address, low bit, high bit) of a REG_RD / REG_WR instruction."""
    return RTC_CNTL_BASE + (word & 0x3FF) * 4, (word >> 18) & 0x1F, (word >> 23) & 0x1F


def test_the_node_loads_the_binary_the_source_assembles_to(binary: bytes):
    # an edit of pir.S without scripts/ulp fails here
    assert bytes.fromhex(str(_module()["BINARY_HEX"])) == binary


def test_header_and_size_fit_ulp_load_binary(binary: bytes):
    magic, text_off, text, data, bss = struct.unpack_from("<IHHHH", binary)
    assert magic == 0x00706C75  # "ulp\0"
    assert text_off == 12 and text_off + text + data == len(binary)
    assert text % 4 == 0 and data == 0 and bss == 0
    assert text + data + bss <= RESERVE_MEM
    assert len(binary) == 156


def test_entry_follows_the_data_words_the_node_fills(binary: bytes):
    mod = _module()
    words = struct.unpack_from(f"<{(len(binary) - 12) // 4}I", binary, 12)
    assert mod["ENTRY"] == 16 and mod["LOAD_ADDR"] == 0
    assert (mod["W_MASK"], mod["W_NEED"], mod["W_PREV"], mod["W_COUNT"]) == (0, 1, 2, 3)
    assert words[:4] == (0, 1, 0, 0)  # mask, need (1 pulse), prev, count before the node writes
    code = words[4:]
    assert all(w >> 28 in (1, 2, 5, 6, 7, 8, 9, 11, 13) for w in code)  # instructions, not data
    # the first instruction at the entry point is a MOVE (ALU immediate) of a data address
    assert code[0] >> 28 == 7


def test_program_reads_the_rtc_gpios_and_wakes_the_chip_once_it_may(binary: bytes):
    code = struct.unpack_from(f"<{(len(binary) - 28) // 4}I", binary, 28)
    reads = [_reg(w) for w in code if w >> 28 == OP_RD_REG]
    # RTC_GPIO_IN_REG bits 14..29: RTC channels 0..15 in one read
    assert (0x3FF48424, 14, 29) in reads
    # RTC_CNTL_LOW_POWER_ST_REG bit 19 (RDY_FOR_WAKEUP) is checked before waking
    assert (RTC_CNTL_BASE + 0xC0, 19, 19) in reads
    wakes = [i for i, w in enumerate(code) if w == 0x90000001]  # END/WAKE with wakeup bit
    assert len(wakes) == 1
    after = code[wakes[0] + 1]
    # then RTC_CNTL_STATE0_REG bit 24 (ULP_CP_SLP_TIMER_EN) := 0: the ULP stops after the wake
    assert after >> 28 == OP_WR_REG and _reg(after) == (RTC_CNTL_BASE + 0x18, 24, 24)
    assert (after >> 10) & 0xFF == 0
    assert code[-1] == 0xB0000000  # HALT: the ULP sleeps until its timer runs it again
    assert code.index(0xB0000000) == len(code) - 1  # one exit, the last instruction


def test_every_allowed_pin_is_an_rtc_channel_the_read_covers():
    pins = _module()["PINS"]
    assert isinstance(pins, dict)
    # rtc_io_periph.c: GPIO -> RTC channel; RTC_IO_TOUCH_PADn_REG = RTCIO base + 0x94 + 4n
    expected = {4: (10, 0x94), 0: (11, 0x98), 2: (12, 0x9C), 15: (13, 0xA0), 13: (14, 0xA4),
                12: (15, 0xA8)}  # fmt: skip
    assert pins == expected
    assert all(channel <= 15 for channel, _ in pins.values())


def _sdist(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{ulp_asm.PROJECT}-{ulp_asm.VERSION}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point pip (through its environment, as a user's pip.conf would) at two file:// indexes,
    the first without the project, and return a function that puts an sdist on the second."""
    empty, simple = tmp_path / "empty", tmp_path / "simple"
    page = simple / ulp_asm.PROJECT
    page.mkdir(parents=True)
    empty.mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", empty.as_uri())
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", simple.as_uri())

    def put(data: bytes) -> None:
        (page / ulp_asm.SDIST).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        (page / "index.html").write_text(
            f'<a href="{ulp_asm.SDIST}#sha256={digest}">{ulp_asm.SDIST}</a>'
        )

    return put


def test_fetch_refuses_an_sdist_that_is_not_the_pinned_one(publish, tmp_path: Path):
    publish(_sdist({"esp32_ulp/__init__.py": b"import os\n"}))
    dest = tmp_path / "esp32-ulp"
    with pytest.raises(ulp_asm.UlpError, match="sha256 .*expected " + ulp_asm.SDIST_SHA256):
        ulp_asm.fetch(dest)
    assert not dest.exists()


def test_fetch_unpacks_only_the_package_and_once(publish, tmp_path: Path, monkeypatch):
    data = _sdist(
        {
            "esp32_ulp/__init__.py": b"x = 1\n",
            "esp32_ulp/opcodes.py": b"y = 2\n",
            "esp32_ulp/notes.txt": b"not code",
            "setup.py": b"raise SystemExit\n",
            "micropython_esp32_ulp.egg-info/PKG-INFO": b"Name: x\n",
        }
    )
    publish(data)
    monkeypatch.setattr(ulp_asm, "SDIST_SHA256", hashlib.sha256(data).hexdigest())
    dest = tmp_path / "esp32-ulp"
    assert "unpacked" in str(ulp_asm.fetch(dest))
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["SDIST_SHA256", "esp32_ulp/__init__.py", "esp32_ulp/opcodes.py"]
    assert (dest / "esp32_ulp" / "opcodes.py").read_bytes() == b"y = 2\n"
    assert ulp_asm.fetch(dest) is None  # there already: no second download
