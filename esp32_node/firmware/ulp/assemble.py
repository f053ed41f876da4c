"""Print the hex of a ULP program assembled by micropython-esp32-ulp (run by MicroPython's unix
port, with the assembler on MICROPYPATH): ``micropython assemble.py pir.S``.
camfleet.esp32_node.tools.ulp_asm runs it for scripts/ulp and tests/esp32/test_ulp.py."""

import binascii
import sys

from esp32_ulp import src_to_binary

with open(sys.argv[1]) as f:
    src = f.read()
try:
    binary = src_to_binary(src, cpu="esp32")  # releases after 1.2.0 also do the S2/S3
except TypeError:
    binary = src_to_binary(src)  # 1.2.0: ESP32 only
print(binascii.hexlify(binary).decode())
