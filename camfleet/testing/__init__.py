"""Test and benchmark harness shared by tests/ and bench/: a controller run in this process or as
a killable subprocess (``controller_process``), simulated CPython devices (``sim_device``), and
CPython stand-ins for the controller that the device suites talk to (``device_receiver``,
``esp32_receiver`` with an OTA block server). Nothing here runs in production."""
