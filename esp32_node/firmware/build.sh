#!/usr/bin/env bash
# Build the camfleet ESP32-CAM firmware in Espressif's ESP-IDF Docker image.
#
#   esp32_node/firmware/build.sh [OUTPUT_DIR]        (needs Docker; ~10 min the first time)
#
# MicroPython v1.22.2 on ESP-IDF v5.0.4 + lemariva's micropython-camera-driver as a user C
# module + espressif/esp32-camera v2.0.5 cloned into the IDF components (the driver's README
# documents MicroPython 1.21 / IDF 5.0.2 / esp32-camera 2.0.5; 1.22 adds ssl.SSLContext, which
# the node's TLS uses); BLE is left out (with it iram0_0_seg overflows, per that README); the
# whole node application is frozen, main.py included (manifest.py);
# partitions.csv gives two OTA slots; the bootloader rolls back unconfirmed images.
# Output: firmware.bin (bootloader + partition table + app, flash at 0x1000) and
# micropython.bin (the app image served to nodes over OTA).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
node="$(cd "$here/.." && pwd)"
out="$(mkdir -p "${1:-$here/build}" && cd "${1:-$here/build}" && pwd)"
IDF_IMAGE="espressif/idf:v5.0.4"
# Exact commits, as the driver's README asks ("MicroPython changes a lot"): a tag or a branch
# can move, a commit cannot. tests/esp32/test_board.py checks these are full 40-hex ids.
MICROPYTHON_COMMIT="8cd15829e293f01dae91b6a2d4a995bfaeca887b"    # v1.22.2
CAMERA_DRIVER_COMMIT="1392e59751a5140c7915dd8965705301e8640160"  # master of 2023-10-22 (PR #90)
ESP32_CAMERA_COMMIT="c0c17bd3de5ea575b775db6cbef84befd020d524"   # v2.0.5

docker run --rm -v "$node:/camfleet/esp32_node:ro" -v "$out:/out" -w /build "$IDF_IMAGE" bash -euxc "
  checkout() { # checkout URL DIR COMMIT: exactly that commit, nothing else
    git init -q \$2 && git -C \$2 fetch -q --depth 1 \$1 \$3 && git -C \$2 checkout -q FETCH_HEAD
    test \"\$(git -C \$2 rev-parse HEAD)\" = \$3
  }
  checkout https://github.com/micropython/micropython.git micropython $MICROPYTHON_COMMIT
  checkout https://github.com/lemariva/micropython-camera-driver.git micropython-camera-driver \
    $CAMERA_DRIVER_COMMIT
  make -C micropython/mpy-cross
  cd micropython/ports/esp32
  make submodules
  cp -r /camfleet/esp32_node/firmware/boards/CAMFLEET_CAM boards/
  cp /camfleet/esp32_node/firmware/sdkconfig.camfleet /camfleet/esp32_node/firmware/manifest.py \
    boards/CAMFLEET_CAM/
  cp /camfleet/esp32_node/firmware/partitions.csv partitions-camfleet.csv
  checkout https://github.com/espressif/esp32-camera.git \$IDF_PATH/components/esp32-camera \
    $ESP32_CAMERA_COMMIT
  CAMFLEET_NODE_DIR=/camfleet/esp32_node make BOARD=CAMFLEET_CAM \
    USER_C_MODULES=/build/micropython-camera-driver/src/micropython.cmake
  cp build-CAMFLEET_CAM/firmware.bin build-CAMFLEET_CAM/micropython.bin /out/
"
echo "firmware in $out: flash with"
echo "  esptool --chip esp32 --port PORT write-flash -z 0x1000 $out/firmware.bin"
