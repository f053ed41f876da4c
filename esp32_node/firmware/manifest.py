# Frozen-module manifest of the camfleet ESP32-CAM firmware (MicroPython's manifest syntax).
# The whole application is frozen, main.py included: at boot the port runs a frozen main.py
# (pyexec_file_if_exists looks in the frozen modules first), so a freshly flashed board starts
# its first wake with no file to copy. Freezing also compiles the node to bytecode in flash (no
# RAM spent compiling at boot) and no stray file on the filesystem can break it. To reach the
# REPL, press Ctrl-C on the serial console while a wake runs (KeyboardInterrupt is not caught).
# tests/esp32/test_board.py checks that this list is exactly what main.py imports, transitively.
include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821 (provided by makemanifest)

NODE_MODULES = (
    "camctl.py",
    "cfg.py",
    "commands.py",
    "creds.py",
    "eventq.py",
    "firmware_info.py",
    "frames.py",
    "main.py",
    "mqtt.py",
    "node.py",
    "ota.py",
    "ota_steps.py",
    "pb.py",
    "schemas.py",
    "signing.py",
    "spool.py",
    "store.py",
    "ulp_pir.py",
    "wake.py",
)
import os  # noqa: E402  (manifests are plain Python run by MicroPython's makemanifest)

freeze(os.environ.get("CAMFLEET_NODE_DIR", "/camfleet/esp32_node"), NODE_MODULES, opt=2)  # noqa: F821
