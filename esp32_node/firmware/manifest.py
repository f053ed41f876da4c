# Frozen-module manifest of the camfleet ESP32-CAM firmware (MicroPython's manifest syntax).
# Freezing compiles the node to bytecode in flash: no RAM spent compiling .py at boot, and the
# node cannot be broken by a stray file on the filesystem. main.py stays a file so a field
# engineer can replace it over the REPL.
include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821 (provided by makemanifest)

NODE_MODULES = (
    "camctl.py",
    "cfg.py",
    "commands.py",
    "eventq.py",
    "firmware_info.py",
    "frames.py",
    "mqtt.py",
    "node.py",
    "ota.py",
    "ota_steps.py",
    "pb.py",
    "schemas.py",
    "signing.py",
    "spool.py",
    "store.py",
    "wake.py",
)
import os  # noqa: E402  (manifests are plain Python run by MicroPython's makemanifest)

freeze(os.environ.get("CAMFLEET_NODE_DIR", "/camfleet/esp32_node"), NODE_MODULES, opt=2)  # noqa: F821
