# camfleet ESP32-CAM board: ESP32_GENERIC's base settings + SPIRAM, without boards/sdkconfig.ble
# (mpconfigboard.h turns Bluetooth off to match), our partition table and rollback
# (sdkconfig.camfleet), the camera user C module (passed as USER_C_MODULES by build.sh) and the
# whole node application frozen in (manifest.py, main.py included). build.sh copies
# sdkconfig.camfleet and manifest.py into this directory.
set(IDF_TARGET esp32)
set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    boards/sdkconfig.spiram
    ${MICROPY_BOARD_DIR}/sdkconfig.camfleet
)
set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)
