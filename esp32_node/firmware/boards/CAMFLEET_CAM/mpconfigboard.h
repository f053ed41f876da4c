// camfleet ESP32-CAM: ESP32 + 4 MB PSRAM + OV2640 through lemariva's micropython-camera-driver.
// tests/esp32/test_board.py checks every define below; read it before removing one.
#define MICROPY_HW_BOARD_NAME "camfleet ESP32-CAM"
#define MICROPY_HW_MCU_NAME "ESP32"

// The driver's modcamera.c is wrapped in `#if MODULE_CAMERA_ENABLED`. Only its Makefile path
// (micropython.mk) passes -DMODULE_CAMERA_ENABLED=1; the CMake path (micropython.cmake, the
// only one the v1.22 esp32 port uses) defines nothing, so without this line the firmware
// builds without a `camera` module and `import camera` fails on the board.
#define MODULE_CAMERA_ENABLED (1)

// v1.22.2's mpconfigport.h turns Bluetooth on unless a board says otherwise, and then needs
// the NimBLE settings of boards/sdkconfig.ble, which this board does not load: with BLE the
// camera driver also overflows iram0_0_seg (driver README). The driver's own board does this.
#define MICROPY_PY_BLUETOOTH (0)
