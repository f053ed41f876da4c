"""Host version of MicroPython's ``network`` module: a WLAN station on the host's network.

``connect`` succeeds at once (the host is "associated"), unless the harness injected a Wi-Fi
fault (``faults.json``: ``{"wifi": n}`` fails the next n connects), in which case ``isconnected``
stays False and ``status`` reports the failure, as a wrong password or a missing AP does;
``{"wifi_hang": n}`` leaves it connecting forever (a driver stuck in association).
"""

import _hostflash as _flash

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202


class WLAN:
    def __init__(self, interface_id=STA_IF):
        self._active = False
        self._status = STAT_IDLE
        self._ssid = None

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)

    def connect(self, ssid=None, key=None, **kwargs):
        if not self._active:
            raise OSError("Wifi Internal State Error")
        self._ssid = ssid
        if _flash.take_fault("wifi_hang"):
            self._status = STAT_CONNECTING  # never associates: only the watchdog ends this
        elif _flash.take_fault("wifi"):
            self._status = STAT_NO_AP_FOUND
        else:
            self._status = STAT_GOT_IP

    def disconnect(self):
        self._status = STAT_IDLE

    def isconnected(self):
        return self._status == STAT_GOT_IP

    def status(self, param=None):
        if param == "rssi":
            return int(_flash.fault_value("rssi", -61))
        return self._status

    def ifconfig(self, *args):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *args, **kwargs):
        if args and args[0] == "mac":
            return b"\x24\x0a\xc4\x00\x00\x01"
        return None
