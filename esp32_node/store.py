"""The node's persistent settings in NVS (namespace ``camfleet``), read once per wake.

NVS keys (at most 15 characters; docs/esp32-node.md lists them all). Provisioning:
``device_id``, ``wifi_ssid``, ``wifi_pass``, ``mqtt_host``, ``mqtt_port``, ``mqtt_user``,
``mqtt_pass``, ``mqtt_tls``, ``mqtt_ca``, ``root``, ``groups``, ``hmac_key``, ``board``,
``pins``, ``wdt_ms``, ``ota_max_ms``, ``bat_pin``, ``ntp_host``. State: ``incarn`` (8 random
bytes chosen when the state is created), ``inc_since`` (its first session), ``session``, ``cfg``
(the effective DeviceConfig, protobuf), ``desired_ver``, ``ota_offer``, ``ota_bits``,
``ota_cmd``, ``ota_pend``, ``mqtt_user0``/``mqtt_pass0`` (the identity in use before the last
delivered one, ``camfleet device rotate``). Nothing changes on flash until ``commit()``.
"""

import esp32

NAMESPACE = "camfleet"
BLOB_MAX = 4096  # largest value read back (the read buffer is allocated once)


class Store:
    def __init__(self, namespace=NAMESPACE):
        self.nvs = esp32.NVS(namespace)
        self._buf = bytearray(BLOB_MAX)

    def blob(self, key, default=None):
        try:
            n = self.nvs.get_blob(key, self._buf)
        except OSError:
            return default
        return bytes(self._buf[:n])

    def text(self, key, default=""):
        raw = self.blob(key)
        return default if raw is None else raw.decode()

    def int(self, key, default=0):
        try:
            return self.nvs.get_i32(key)
        except OSError:
            return default

    def set_blob(self, key, value):
        self.nvs.set_blob(key, value)

    def set_text(self, key, value):
        self.nvs.set_blob(key, value.encode())

    def set_int(self, key, value):
        self.nvs.set_i32(key, value)

    def erase(self, key):
        try:
            self.nvs.erase_key(key)
        except OSError:
            pass

    def commit(self):
        self.nvs.commit()
