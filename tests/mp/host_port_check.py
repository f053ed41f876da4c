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
    esp32.wake_on_ext1([machine.Pin(2)], esp32.WAKEUP_ANY_HIGH)  # the harness wakes it by ext1
    machine.deepsleep(5000)


def _err(f, *args, **kw):
    try:
        f(*args, **kw)
    except Exception as e:  # the exact exception the real module raises is the point
        return [type(e).__name__] + list(e.args)
    return None


if phase == "strict":
    import camera

    out = {}
    out["ext0_gpio16"] = _err(esp32.wake_on_ext0, machine.Pin(16), 1)
    out["ext1_gpio5"] = _err(esp32.wake_on_ext1, [machine.Pin(13), machine.Pin(5)], True)
    esp32.wake_on_ext0(machine.Pin(13), 1)
    out["touch_with_ext0"] = _err(esp32.wake_on_touch, True)
    out["ulp_with_ext0"] = _err(esp32.wake_on_ulp, True)
    out["touchpad_gpio5"] = _err(machine.TouchPad, machine.Pin(5))
    out["pin_20"] = _err(machine.Pin, 20)
    part = esp32.Partition("ota_1")
    out["partial_sector"] = _err(part.writeblocks, 0, b"\x00" * 100)
    part.writeblocks(1, b"\x0f" * 4096)
    part.writeblocks(1, b"\xf3", 0)  # a write without erase only clears bits
    buf = bytearray(1)
    part.readblocks(1, buf)
    out["nor_write"] = buf[0]
    out["set_boot_garbage"] = _err(part.set_boot)
    out["ulp_bad_magic"] = _err(esp32.ULP().load_binary, 0, b"\x00" * 16)
    out["unique_id"] = list(machine.unique_id())
    out["capture_before_init"] = camera.capture()
    out["framesize_before_init"] = camera.framesize(camera.FRAME_VGA)
    out["init_positional"] = _err(camera.init, 0, camera.JPEG)
    out["init_unknown_kw"] = _err(camera.init, 0, framesize_max=1)
    out["init_dram_uxga"] = _err(camera.init, 0, framesize=camera.FRAME_UXGA)
    out["init_defaults"] = _err(camera.init, 0)  # VGA in DRAM: the default buffer is DRAM
    camera.init(0, fb_location=camera.PSRAM)
    out["defaults"] = camera.init_config()
    out["second_init"] = _err(camera.init, 0)
    out["ovf"] = camera.capture()  # the harness's frame is larger than a QQVGA buffer
    print("RESULT " + json.dumps(out))
    sys.exit(0)

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
