#!/usr/bin/env bash
# Build the camfleet ESP32-CAM firmware in Espressif's ESP-IDF Docker image.
#
#   esp32_node/firmware/build.sh [OUTPUT_DIR]        (needs Docker; ~10 min the first time)
#
# MicroPython v1.24.1 (supports ESP-IDF v5.2.2) + lemariva's micropython-camera-driver as a
# user C module + the esp32-camera IDF component; the node modules are frozen (manifest.py);
# partitions.csv gives two OTA slots; the bootloader rolls back unconfirmed images.
# Output: firmware.bin (bootloader + partition table + app, flash at 0x1000) and
# micropython.bin (the app image served to nodes over OTA).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
node="$(cd "$here/.." && pwd)"
out="$(mkdir -p "${1:-$here/build}" && cd "${1:-$here/build}" && pwd)"
IDF_IMAGE="espressif/idf:v5.2.2"
MICROPYTHON_REF="v1.24.1"
CAMERA_DRIVER_REF="master"

docker run --rm -v "$node:/camfleet/esp32_node:ro" -v "$out:/out" -w /build "$IDF_IMAGE" bash -euxc "
  git clone --depth 1 --branch $MICROPYTHON_REF https://github.com/micropython/micropython.git
  git clone --depth 1 --branch $CAMERA_DRIVER_REF https://github.com/lemariva/micropython-camera-driver.git
  make -C micropython/mpy-cross
  cd micropython/ports/esp32
  make submodules
  cp -r /camfleet/esp32_node/firmware/boards/CAMFLEET_CAM boards/
  cp /camfleet/esp32_node/firmware/sdkconfig.camfleet /camfleet/esp32_node/firmware/manifest.py \
    boards/CAMFLEET_CAM/
  cp /camfleet/esp32_node/firmware/partitions.csv partitions-camfleet.csv
  idf.py add-dependency 'espressif/esp32-camera^2.0.10'
  CAMFLEET_NODE_DIR=/camfleet/esp32_node make BOARD=CAMFLEET_CAM \
    USER_C_MODULES=/build/micropython-camera-driver/src/micropython.cmake
  cp build-CAMFLEET_CAM/firmware.bin build-CAMFLEET_CAM/micropython.bin /out/
"
echo "firmware in $out: flash with"
echo "  esptool --chip esp32 --port PORT write-flash -z 0x1000 $out/firmware.bin"
