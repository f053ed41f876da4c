"""The ULP program the node loads (esp32_node/ulp_pir.py, assembled from firmware/ulp/pir.S by
micropython-esp32-ulp through scripts/ulp) is a loadable ESP32 ULP-FSM binary that does what
the node relies on: the header ulp_load_binary checks, the data words the node fills, the
entry point it starts, a read of the RTC GPIO inputs, and a wake of the chip that also stops
the ULP timer. The instruction encodings are those of Espressif's "ULP Coprocessor
Instruction Set" (ESP32): opcode in bits 31..28."""

from __future__ import annotations

import ast
import hashlib
import struct
from pathlib import Path

NODE = Path(__file__).parents[2] / "esp32_node"
SOURCE = NODE / "firmware" / "ulp" / "pir.S"

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


def _binary() -> bytes:
    return bytes.fromhex(str(_module()["BINARY_HEX"]))


def _reg(word: int) -> tuple[int, int, int]:
    """(register address, low bit, high bit) of a REG_RD / REG_WR instruction."""
    return RTC_CNTL_BASE + (word & 0x3FF) * 4, (word >> 18) & 0x1F, (word >> 23) & 0x1F


def test_binary_was_assembled_from_the_source_as_it_is():
    # scripts/ulp records the hash of the source it assembled: an edit without regenerating
    # the binary fails here
    assert _module()["SOURCE_SHA256"] == hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def test_header_and_size_fit_ulp_load_binary():
    binary = _binary()
    magic, text_off, text, data, bss = struct.unpack_from("<IHHHH", binary)
    assert magic == 0x00706C75  # "ulp\0"
    assert text_off == 12 and text_off + text + data == len(binary)
    assert text % 4 == 0 and data == 0 and bss == 0
    assert text + data + bss <= RESERVE_MEM
    assert len(binary) == 156


def test_entry_follows_the_data_words_the_node_fills():
    mod = _module()
    binary = _binary()
    words = struct.unpack_from(f"<{(len(binary) - 12) // 4}I", binary, 12)
    assert mod["ENTRY"] == 16 and mod["LOAD_ADDR"] == 0
    assert (mod["W_MASK"], mod["W_NEED"], mod["W_PREV"], mod["W_COUNT"]) == (0, 1, 2, 3)
    assert words[:4] == (0, 1, 0, 0)  # mask, need (1 pulse), prev, count before the node writes
    code = words[4:]
    assert all(w >> 28 in (1, 2, 5, 6, 7, 8, 9, 11, 13) for w in code)  # instructions, not data
    # the first instruction at the entry point is a MOVE (ALU immediate) of a data address
    assert code[0] >> 28 == 7


def test_program_reads_the_rtc_gpios_and_wakes_the_chip_once_it_may():
    binary = _binary()
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
