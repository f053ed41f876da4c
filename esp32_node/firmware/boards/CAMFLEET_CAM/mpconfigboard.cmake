# camfleet ESP32-CAM board: ESP32_GENERIC with SPIRAM and without BLE (IRAM), our partition table, rollback, the
# camera user C module (passed as USER_C_MODULES) and the node frozen in. build.sh copies
# sdkconfig.camfleet and manifest.py into this directory.
set(IDF_TARGET esp32)
set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    boards/sdkconfig.spiram
    ${MICROPY_BOARD_DIR}/sdkconfig.camfleet
)
set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)
