"""Run under MicroPython with esp32_node/host on the path: exercises the host esp32/machine
modules the way the node does and prints what it observes as one JSON line.

argv: "write" stages NVS values (one committed, one not), fills RTC memory and a partition block,
then deep-sleeps; "read" reports what survived.
"""

import json
import sys

import esp32
import machine

phase = sys.argv[-1]
nvs = esp32.NVS("probe")
if phase == "write":
    nvs.set_i32("kept", 42)
    nvs.commit()
    nvs.set_i32("lost", 7)  # never committed: gone after any reset
    machine.RTC().memory(b"rtc-data")
    part = esp32.Partition("ota_1")
    part.writeblocks(2, b"\xab" * 4096)
    machine.deepsleep(5000)

out = {"reset_cause": machine.reset_cause(), "wake_reason": machine.wake_reason()}
try:
    out["kept"] = nvs.get_i32("kept")
    out["lost"] = nvs.get_i32("lost")
except OSError as e:
    out["missing_errno"] = e.args[0]
out["rtc"] = machine.RTC().memory().decode()
buf = bytearray(4096)
part = esp32.Partition("ota_1")
part.readblocks(2, buf)
out["block2"] = buf[0]
part.readblocks(3, buf)
out["block3"] = buf[0]  # never written: erased flash reads 0xFF
info = part.info()
out["ota_1"] = [info[2], info[3], info[4]]
out["running"] = esp32.Partition(esp32.Partition.RUNNING).info()[4]
out["next"] = esp32.Partition(esp32.Partition.RUNNING).get_next_update().info()[4]
print("RESULT " + json.dumps(out))
