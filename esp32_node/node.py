"""One wake of the camera node, from boot to deep sleep (docs/esp32-node.md walks through it).

config from NVS -> Wi-Fi (before the camera: its inrush browns out a weak supply while Wi-Fi
calibrates) -> MQTT (clean_session=False, will = offline) -> birth -> queued commands and the
retained desired config -> spool replay -> capture for the wake cause -> publish -> telemetry ->
receipts -> OTA -> stay awake if asked -> asleep state -> arm wake sources -> deepsleep.

Every step that can fail on a real device (Wi-Fi, broker, camera, flash) degrades the wake instead
of ending it: no network means the frame stays in the spool for the next wake.
"""

import gc
import hashlib
import json
import os
import time

import camctl
import cfg as cfgmod
import commands
import esp32
import eventq
import firmware_info
import frames
import machine
import mqtt
import network
import ota as otamod
import ota_steps
import pb
import schemas as S
import signing
import store
import wake
from spool import Spool
from store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy only: MicroPython has no typing module
    from typing import Any  # noqa: F401  (used in type comments)

PLATFORM = "esp32"
CAPABILITIES = (
    "jpeg", "deep_sleep", "ota", "psram", "chunks", "spool",
    "ext0_wake", "ext1_wake", "touch_wake", "ulp_wake",
)  # fmt: skip
WIFI_TIMEOUT_MS = 15000
# CONNACK refusals that mean "not these credentials" (MQTT 3.1.1 codes 4 and 5), as mqtt.py says
AUTH_REFUSED = ("connection refused, code 4", "connection refused, code 5")
MQTT_TIMEOUT_MS = 8000

# The topic scheme of proto/topics.py, written again here because the node cannot import
# CPython code; tests/esp32/test_topics.py runs these under MicroPython and compares.
PUBLISHES = ("state", "frame", "chunk", "telemetry", "event", "ack", "reported", "ota/request")
SUBSCRIBES = ("cmd", "receipt", "desired", "ota/block")


def device_topic(root, device_id, kind):
    return "%s/v1/%s/%s" % (root, device_id, kind)


def group_cmd_topic(root, group):
    return "%s/v1/_group/%s/cmd" % (root, group)


WDT_TIMEOUT_MS = 30000
# Largest receipt handled (decoded into RAM): the 32 ranges with incarnations a controller sends
# take ~900 bytes.
MAX_RECEIPT_BYTES = 1024


class Node:
    def __init__(self):
        # Collect after every 16 KB allocated: the wake's long-lived objects then stay packed
        # at the bottom of the heap instead of being scattered up to the high-water mark of
        # its garbage, which leaves no contiguous block for a frame (a UXGA JPEG is one
        # allocation of up to 384,000 bytes, made by the camera driver).
        gc.threshold(16 * 1024)
        self.t0 = time.ticks_ms()
        self.store = Store()
        st = self.store
        self.wdt = machine.WDT(timeout=st.int("wdt_ms", WDT_TIMEOUT_MS))
        self.device_id = st.text("device_id", "esp32-" + _hex(machine.unique_id()))
        self.root = st.text("root", "camfleet")
        self.groups = [g for g in st.text("groups", "").split(",") if g]
        self.rtc = wake.load_rtc()
        self.wake_cause, self.reset_reason = wake.classify(self.rtc)
        if self.rtc is None:
            self.rtc = {}
        self.rtc["cam"] = 0
        self.rtc.pop("rb", None)  # the mark of a requested restart is read once
        raw = st.blob("cfg")
        self.cfg_error = ""
        try:
            stored = pb.decode(S.DEVICE_CONFIG, raw) if raw else {}
        except ValueError as e:  # never let a bad blob brick the node: defaults, and say so
            stored = {}
            self.cfg_error = "stored config unreadable (%s): running defaults" % e
        self.cfg = cfgmod.merge(cfgmod.DEFAULTS, stored)
        self.desired_version = st.int("desired_ver", 0)
        self.spool = Spool(
            cfgmod.top(self.cfg, "spool_max_frames"), cfgmod.top(self.cfg, "spool_max_bytes")
        )
        self.session = (st.int("session", 0) + 1) & 0x7FFFFFFF
        self.incarnation = st.blob("incarn")
        if self.incarnation is None or len(self.incarnation) != 8:
            # State created (first boot, NVS erased, re-provisioned): a new incarnation tells
            # this node's frames from its earlier self's, whose session numbers repeat. A
            # spool that outlived the state keeps its files: start above their sessions.
            self.incarnation = os.urandom(8)
            self.session = max(self.session, self.spool.max_session() + 1)
            st.set_blob("incarn", self.incarnation)
            st.set_int("inc_since", self.session)
        self.inc_since = st.int("inc_since", 0)  # first session of this incarnation
        st.set_int("session", self.session)
        st.commit()  # before the will carries it: a reset must never reuse a session number
        self.seq = 0
        self.slot, self.firmware = firmware_info.running()
        # Per-device key: OTA offers, receipts, commands and desired config must be signed with
        # it. Empty (a development node): nothing is checked.
        self.key = st.blob("hmac_key", b"")
        self.ota = otamod.Ota(st, self.key)
        pins = st.text("pins")  # "custom" boards: JSON {"d0": 5, ..., "pclk": 22}
        self.camera = camctl.Camera(
            st.text("board", "ai-thinker"), json.loads(pins) if pins else None
        )
        self.client = None  # type: Any
        self.identity = ""  # the broker username of the connection (Reported.identity)
        self.wlan = None  # type: Any
        self.topics = {}
        # capture requests of this wake: (count, interval_ms, overrides, metadata, command id)
        self.captures = []
        self.unreceipted = []  # (session, seq) published this wake, waiting for a receipt
        self.reboot_after = None
        self.stay_until = None  # ticks deadline
        self.events_out = eventq.load()
        self.battery_mv = None  # type: Any  # measured when NVS bat_pin names the sense pin
        self.low_battery = False
        self.wait_extra_ms = 0

    # --- network -----------------------------------------------------------------------

    def connect_wifi(self):
        ssid = self.store.text("wifi_ssid")
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)
        if self.wlan.isconnected():
            return True
        self.wlan.connect(ssid, self.store.text("wifi_pass"))
        deadline = time.ticks_add(time.ticks_ms(), WIFI_TIMEOUT_MS)
        while not self.wlan.isconnected():
            status = self.wlan.status()
            if (
                status in (network.STAT_NO_AP_FOUND, network.STAT_WRONG_PASSWORD)
                or time.ticks_diff(deadline, time.ticks_ms()) <= 0
            ):
                self.log("wifi failed, status %s" % status)
                return False
            time.sleep_ms(100)
        return True

    def go_online(self):
        """Wi-Fi, the clock (SNTP after a power cut), then the broker; False when offline."""
        if not self.connect_wifi():
            return False
        wake.sync_clock(self.store.text("ntp_host"))
        return self.connect_mqtt()

    def connect_mqtt(self, fallback=True):
        st = self.store
        for kind in PUBLISHES:
            self.topics[kind] = device_topic(self.root, self.device_id, kind)
        c = mqtt.MQTTClient(
            self.device_id,
            st.text("mqtt_host", "127.0.0.1"),
            st.int("mqtt_port", 1883),
            user=st.text("mqtt_user") or None,
            password=st.text("mqtt_pass") or None,
            keepalive=60,
            tls=bool(st.int("mqtt_tls", 0)),
            ca=st.blob("mqtt_ca"),
        )
        c.set_last_will(
            self.topics["state"], self.state_msg(S.PRESENCE_OFFLINE), retain=True, qos=1
        )
        try:
            session_present = c.connect(clean_session=False, timeout_ms=MQTT_TIMEOUT_MS)
        except OSError as e:
            self.log("broker unreachable: %s" % e)
            c.close()
            if fallback and str(e) in AUTH_REFUSED:
                import creds

                if creds.swap(st):  # a rotation undone: the previous identity
                    return self.connect_mqtt(False)
            return False
        self.client = c
        self.identity = st.text("mqtt_user")  # what this connection authenticated as
        subs = [device_topic(self.root, self.device_id, k) for k in SUBSCRIBES]
        subs += [group_cmd_topic(self.root, g) for g in self.groups]
        # The broker keeps a persistent session's subscriptions: when it still has ours (CONNACK
        # session present) and they are the ones this wake wants (same list as the last SUBACK,
        # remembered in RTC memory), SUBSCRIBE again would only cost a round trip of radio time
        # and grow mosquitto's heap at every wake. A broker that lost the session, a power cut
        # (RTC memory gone) or a changed group list subscribes again.
        mark = _hex(hashlib.sha256("\n".join(subs).encode()).digest()[:8])
        if session_present and self.rtc.get("subs") == mark:
            return True
        self.rtc.pop("subs", None)
        try:
            c.subscribe(subs, qos=1)
        except OSError as e:
            self.lost(e)
            return False
        self.rtc["subs"] = mark
        return True

    @property
    def online(self):
        return self.client is not None and self.client.connected

    def publish(self, kind, msg_bytes, retain=False):
        if not self.online:
            return False
        try:
            self.client.publish(self.topics[kind], msg_bytes, retain=retain, qos=1)
            return True
        except OSError as e:
            self.lost(e)
            return False

    def lost(self, err):
        self.log("connection lost: %s" % err)
        if self.client is not None:
            self.client.close()

    # --- messages ------------------------------------------------------------------------

    def uptime_ms(self):
        # Since this wake began: an ESP32 boots at every wake, so this is the "since the device
        # booted" that uptime_ms means in Frame, Telemetry and Event (proto/.../frame.proto).
        return time.ticks_diff(time.ticks_ms(), self.t0)

    def state_msg(self, presence, next_wake_ms=0):
        msg = {
            "presence": presence,
            "session": self.session,
            "timestamp_ms": wake.now_ms(),
            "firmware_version": self.firmware,
            "platform": PLATFORM,
            "board": self.camera.board,
            # "credentials": takes a new broker password in its desired config (needs the key)
            "capabilities": list(CAPABILITIES) + (["credentials"] if self.key else []),
            "wake_cause": self.wake_cause,
            "next_wake_ms": next_wake_ms,
            "desired_version": self.desired_version,
            "ota_slot": self.slot,
            "reset_reason": self.reset_reason,
            "max_payload": cfgmod.top(self.cfg, "max_payload"),
            "info": self.info(),
            "groups": self.groups,
            "incarnation": self.incarnation,
        }
        return pb.encode(S.DEVICE_STATE, msg)

    def info(self):
        out = {"heap_free": str(gc.mem_free()), "camera": "ov2640/esp32-camera"}
        try:
            out["ip"] = self.wlan.ifconfig()[0]
            out["mac"] = _hex(self.wlan.config("mac"))
        except Exception:  # no Wi-Fi yet (the will is built before connecting)
            pass
        return out

    def birth(self):
        return self.publish("state", self.state_msg(S.PRESENCE_ONLINE), retain=True)

    def event(self, typ, message, severity=S.SEV_INFO, attributes=None, ota=None):
        if severity >= S.SEV_WARNING:  # on the serial console too: a node that never reached
            self.log("%s: %s" % (typ, message))  # the broker shows there why (first flash)
        ev = {
            "timestamp_ms": wake.now_ms(),
            "session": self.session,
            "type": typ,
            "severity": severity,
            "message": message,
            "uptime_ms": self.uptime_ms(),
        }
        if attributes:
            ev["attributes"] = attributes
        if ota:
            ev["ota"] = ota
        if not self.publish("event", pb.encode(S.EVENT, ev)):
            self.events_out.append(ev)
            eventq.save(self.events_out)

    def flush_events(self):
        if not self.events_out:
            return
        while self.events_out and self.online:
            if not self.publish("event", pb.encode(S.EVENT, self.events_out[0])):
                break
            self.events_out.pop(0)
        eventq.save(self.events_out)

    def ack(self, command_id, status, detail="", capture_ids=None):
        msg = {
            "command_id": command_id,
            "status": status,
            "detail": detail,
            "timestamp_ms": wake.now_ms(),
            "session": self.session,
        }
        if capture_ids:
            msg["capture_ids"] = capture_ids
        self.publish("ack", pb.encode(S.ACK, msg))
        commands.acked(self, command_id, status)

    def telemetry(self):
        t = {
            "timestamp_ms": wake.now_ms(),
            "session": self.session,
            "uptime_ms": self.uptime_ms(),
            "wake_cause": self.wake_cause,
            "heap_free": gc.mem_free(),
            "spool_depth": self.spool.depth(),
            "spool_bytes": self.spool.total_bytes(),
            "camera_status": self.camera.status,
        }
        if self.battery_mv is not None:
            t["battery_mv"] = self.battery_mv
        if "awake" in self.rtc:
            t["awake_ms"] = self.rtc["awake"]  # the whole previous wake, boot to deepsleep
        try:
            t["psram_free"] = sum(h[1] for h in esp32.idf_heap_info(esp32.HEAP_DATA))
            t["rssi_dbm"] = self.wlan.status("rssi")
        except Exception:
            pass
        try:
            # the original ESP32's uncalibrated sensor reads in Fahrenheit: a trend, not a truth
            t["temperature_c"] = (esp32.raw_temperature() - 32) / 1.8
        except Exception:  # not on every chip or port
            pass
        self.publish("telemetry", pb.encode(S.TELEMETRY, t))

    def reported(self, error="", version=None):
        msg = {
            "version": self.desired_version if version is None else version,
            "applied_at_ms": wake.now_ms(),
            "config": self.cfg,
            "error": error,
            "session": self.session,
            "identity": self.identity,
        }
        self.publish("reported", pb.encode(S.REPORTED, msg), retain=True)

    # --- incoming ----------------------------------------------------------------------

    def drain(self, wait_ms=0):
        """Read what the broker sent (up to wait_ms) and handle every queued message."""
        if self.online:
            if self.client.inbox:
                wait_ms = 0  # messages that arrived during a publish are handled first
            try:
                self.client.poll(wait_ms)
            except OSError as e:
                self.lost(e)
        elif wait_ms:
            time.sleep_ms(min(wait_ms, 100))
        if self.client is not None and self.client.dropped:
            n, self.client.dropped = self.client.dropped, 0
            self.event("message_error", "%d oversized message(s) skipped" % n, S.SEV_WARNING)
        inbox = self.client.inbox if self.client is not None else []
        while inbox:
            topic, payload, _retained = inbox.pop(0)
            self.wdt.feed()
            try:
                self.dispatch(topic, payload)
            except Exception as e:  # a bad message must never end the wake
                self.event("message_error", "%s: %s" % (topic, e), S.SEV_WARNING)

    def dispatch(self, topic, payload):
        kind = topic.split("/", 3)[-1]
        if topic.startswith(self.root + "/v1/_group/"):
            kind = "cmd"
        if self.key and payload and kind in signing.SIGNED_KINDS:
            # Before anything acts on it. Group-topic commands are never signed for one device
            # (the controller sends each member its own copy), so they are refused too.
            body = signing.verify(self.key, kind, self.device_id, payload)
            if body is None:
                self.event(
                    "signature_refused",
                    "%s on %s refused: no valid signature with this device's key" % (kind, topic),
                    S.SEV_WARNING,
                    {"kind": kind},
                )
                return
            payload = body
        if kind == "cmd":
            commands.handle(self, payload)
        elif kind == "receipt":
            self.on_receipt(payload)
        elif kind == "desired":
            self.on_desired(payload)
        elif kind == "ota/block":
            if self.ota.active:
                self.ota.on_block(payload)

    def on_receipt(self, payload):
        """Delete what a receipt covers of the frames sent this wake (spool.apply_receipt).
        Bounded first: a receipt is decoded into memory, so an oversized one is refused whole
        (controllers send at most 32 ranges) rather than risk a MemoryError."""
        if len(payload) > MAX_RECEIPT_BYTES:
            self.event("message_error", "receipt of %d bytes refused" % len(payload), S.SEV_WARNING)
            return
        ranges = pb.decode(S.RECEIPT, payload).get("stored", [])
        if self.spool.apply_receipt(ranges, self.incarnation, self.inc_since, self.unreceipted):
            self.unreceipted = [k for k in self.unreceipted if self.spool.has(k[0], k[1])]

    def on_desired(self, payload):
        if not payload:
            return  # retained message cleared
        d = pb.decode(S.DESIRED, payload)
        version = d.get("version", 0)
        if version <= self.desired_version:
            return
        # Credentials first, whatever becomes of the config: a refused config must not leave
        # the node on an identity that is about to be deleted.
        if d.get("credentials"):
            import creds

            if creds.take(self, d["credentials"]):
                self.reconnect()
        new = cfgmod.merge(cfgmod.DEFAULTS, d.get("config", {}))
        problem = self.check_config(new)
        if problem:
            self.event("config_rejected", problem, S.SEV_WARNING, {"version": str(version)})
            self.publish_reported_error(version, problem)
            return
        self.cfg = new
        self.desired_version = version
        self.persist_cfg()
        self.reported()

    def reconnect(self):
        """Connect again with the identity in NVS now, within this wake: a clean disconnect
        (no will), the same session number, the birth again (the persistent session keeps the
        subscriptions and what the broker queued)."""
        if self.client is not None:
            self.client.disconnect()
        self.rtc.pop("subs", None)  # subscribe again: cheap, and certain
        if self.connect_mqtt():
            self.birth()

    def publish_reported_error(self, version, problem):
        self.reported(problem, version)

    def check_config(self, c):
        try:
            camctl.validate(c.get("camera", {}))
        except ValueError as e:
            return str(e)
        problem = wake.check_sources(c.get("sleep") or {}, camctl.used_pins(self.camera.profile))
        if problem:
            return problem
        mp = cfgmod.top(c, "max_payload")
        if mp < 4096:
            return "max_payload %d below 4096" % mp
        size = len(pb.encode(S.DEVICE_CONFIG, c))
        if size > store.BLOB_MAX:
            return "config of %d bytes exceeds the %d-byte NVS blob" % (size, store.BLOB_MAX)
        return None

    def persist_cfg(self):
        self.store.set_blob("cfg", pb.encode(S.DEVICE_CONFIG, self.cfg))
        self.store.set_int("desired_ver", self.desired_version)
        self.store.commit()
        self.spool.max_frames = cfgmod.top(self.cfg, "spool_max_frames")
        self.spool.max_bytes = cfgmod.top(self.cfg, "spool_max_bytes")
        self.apply_stay_awake()

    def apply_stay_awake(self):
        until = self.cfg.get("stay_awake_until_ms")
        now = wake.now_ms()
        if until and now and until > now:
            ms = min(until - now, cfgmod.MAX_STAY_AWAKE_S * 1000)
            self.stay_until = time.ticks_add(time.ticks_ms(), ms)

    # --- frames --------------------------------------------------------------------------

    def check_battery(self):
        """Battery through a 1:2 divider on NVS ``bat_pin``; below sleep.low_battery_mv the wake
        captures nothing and sleeps max_sleep_s (the camera is the biggest load)."""
        pin = self.store.int("bat_pin", -1)
        if pin < 0:
            return
        try:
            adc = machine.ADC(machine.Pin(pin), atten=machine.ADC.ATTN_11DB)
            self.battery_mv = adc.read_uv() * 2 // 1000
        except Exception as e:
            self.log("battery read failed: %s" % e)
            return
        low = cfgmod.get(self.cfg, "sleep", "low_battery_mv", 0)
        if low and self.battery_mv < low:
            self.low_battery = True
            self.event(
                "low_battery",
                "%d mV < %d mV: no capture, long sleep" % (self.battery_mv, low),
                S.SEV_WARNING,
                {"battery_mv": str(self.battery_mv)},
            )

    def plan_captures(self):
        """Frames this wake cause asks for (commands add their own)."""
        if self.low_battery:
            for request in self.captures:
                if request[4]:
                    self.ack(request[4], S.ACK_FAILED, "battery low: %d mV" % self.battery_mv)
            self.captures = []
            return
        c = self.wake_cause
        sched = self.cfg.get("schedule") or {}
        if c == S.WAKE_TIMER:
            if self.rtc.get("due") != "capture":
                return
            n = sched.get("burst_count", 1) or 1
            self.captures.insert(0, (n, sched.get("burst_interval_ms", 0), {}, {}, ""))
        elif c in (S.WAKE_EXT0, S.WAKE_EXT1):
            n = sched.get("motion_burst_count", 3) or 1
            self.captures.insert(
                0, (n, sched.get("burst_interval_ms", 0), {}, {"trigger": "motion"}, "")
            )
            self.event(
                "motion", "woken by %s" % wake.NAMES[c], attributes={"source": wake.NAMES[c]}
            )
        elif c in (S.WAKE_POWER_ON, S.WAKE_ULP, S.WAKE_TOUCH, S.WAKE_WATCHDOG):
            self.captures.insert(0, (1, 0, {}, {}, ""))
        # soft reset (OTA, reboot command) and brownout: no capture; a brownout came from the
        # camera's inrush, so the next timer wake tries again rather than looping now

    def run_captures(self):
        while self.captures:
            count, interval, overrides, metadata, cid = self.captures.pop(0)
            ids = []
            ok = True
            for i in range(count):
                self.wdt.feed()
                if i and interval:
                    time.sleep_ms(interval)
                key = self.capture_one(overrides, metadata, cid)
                if key is None:
                    ok = False
                    break
                ids.append("%d-%d" % key)
                self.send_spooled(key)
            if cid:
                if ok:
                    self.ack(cid, S.ACK_DONE, "", ids)
                else:
                    self.ack(cid, S.ACK_FAILED, "camera: %s" % self.camera.status, ids)

    def camera_shot(self, settings):
        """Apply ``settings`` (starting the sensor if needed) and take one frame: (jpeg, used).
        A start sets the brownout marker in RTC memory, so a supply that dips under the
        sensor's inrush is recognised at the next boot."""
        if self.camera.needs_start(settings):
            self.rtc["cam"] = 1
            wake.save_rtc(self.rtc)
            try:
                used = self.camera.apply(settings)
            finally:
                self.rtc["cam"] = 0
                wake.save_rtc(self.rtc)
        else:
            used = self.camera.apply(settings)
        return self.camera.capture(), used

    def capture_one(self, overrides, metadata, cid):
        """Capture, hash and spool one frame; returns its (session, seq) or None."""
        settings = cfgmod.merge(self.cfg.get("camera", {}), overrides)
        self.make_room()
        jpeg = None
        for attempt in (1, 2):
            try:
                jpeg, used = self.camera_shot(settings)
                break
            except camctl.SettingsError as e:
                self.camera.status = "settings rejected: %s" % e
                self.event("camera_error", self.camera.status, S.SEV_ERROR)
                return None
            except Exception as e:  # no frame (False), init failure, sensor not answering
                if self.camera.on:  # else start() already said why: init_failed: ...
                    self.camera.status = "capture_failed: %s" % e
                self.event(
                    "camera_error",
                    "%s (attempt %d of 2%s)"
                    % (
                        self.camera.status,
                        attempt,
                        ", restarting the camera" if attempt == 1 else "",
                    ),
                    S.SEV_ERROR,
                )
                self.camera.stop()  # a second try starts the sensor afresh
        if jpeg is None:
            return None
        self.seq += 1
        meta = {
            "wake_cause": wake.NAMES.get(self.wake_cause, ""),
            "heap_free": str(gc.mem_free()),
            "board": self.camera.board,
        }
        meta.update(metadata)
        header = {
            "capture_id": "%d-%d" % (self.session, self.seq),
            "session": self.session,
            "seq": self.seq,
            "captured_at_ms": wake.now_ms(),
            "content_type": "image/jpeg",
            "size": len(jpeg),
            "sha256": hashlib.sha256(jpeg).digest(),
            "settings": used,
            "metadata": meta,
            "wake_cause": self.wake_cause,
            "width": used["width"],
            "height": used["height"],
            "command_id": cid,
            "uptime_ms": self.uptime_ms(),
            "incarnation": self.incarnation,
        }
        dropped = self.spool.add(self.session, self.seq, pb.encode(S.FRAME_HEADER, header), jpeg)
        del jpeg
        gc.collect()
        for s, q in dropped:
            self.event(
                "spool_dropped",
                "spool full: dropped frame %d-%d" % (s, q),
                S.SEV_WARNING,
                {"session": str(s), "seq": str(q)},
            )
        return self.session, self.seq

    def make_room(self):
        """Spool nearly full with frames already sent: give their receipts a moment before the
        next frame pushes the oldest out (dropping a frame the controller already stored is
        harmless, but dropping one it never got is a loss)."""
        sp = self.spool
        if len(sp.entries()) < sp.max_frames and sp.total_bytes() < sp.max_bytes * 3 // 4:
            return
        window = cfgmod.get(self.cfg, "sleep", "awake_window_s") * 1000
        deadline = time.ticks_add(time.ticks_ms(), window)
        while self.online and self.unreceipted and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            self.wdt.feed()
            self.drain(min(100, max(0, time.ticks_diff(deadline, time.ticks_ms()))))

    def send_spooled(self, key):
        if not self.online:
            return
        for e in self.spool.entries():
            if (e[0], e[1]) == key:
                self.send_entry(e, False)

    def send_entry(self, entry, historical):
        try:
            frames.publish(
                self.client,
                self.topics,
                self.spool,
                entry,
                cfgmod.top(self.cfg, "max_payload"),
                historical,
            )
        except OSError as e:
            self.lost(e)
            return False
        except ValueError as e:  # a spool file damaged on flash: drop it rather than loop on it
            self.spool.remove(entry[0], entry[1])
            self.event("spool_dropped", "unreadable spool file: %s" % e, S.SEV_ERROR,
                       {"session": str(entry[0]), "seq": str(entry[1])})  # fmt: skip
            return False
        self.unreceipted.append((entry[0], entry[1]))
        return True

    def replay_spool(self):
        """Publish, flagged historical, what earlier wakes spooled and no receipt covered yet."""
        for e in self.spool.entries():
            if not self.online:
                return
            self.wdt.feed()
            self.send_entry(e, True)
            self.drain()  # receipts for earlier replays free flash as we go

    def wait_receipts(self):
        """Stay up to awake_window_s for receipts and late commands; leave early when done."""
        window = cfgmod.get(self.cfg, "sleep", "awake_window_s") * 1000 + self.wait_extra_ms
        deadline = time.ticks_add(time.ticks_ms(), window)
        while self.online and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            if not self.unreceipted and not self.captures:
                return
            self.wdt.feed()
            self.drain(min(200, max(0, time.ticks_diff(deadline, time.ticks_ms()))))
            if self.captures:
                self.run_captures()

    # --- OTA -----------------------------------------------------------------------------

    def report_crash(self):
        """main.py wrote the traceback of the last wake's crash: send it once."""
        try:
            with open("crash.txt") as f:
                text = f.read(600)
        except OSError:
            return
        self.event("crash", text, S.SEV_ERROR)
        os.remove("crash.txt")

    # --- the wake ------------------------------------------------------------------------

    def run(self):
        self.log(
            "wake: %s, session %d, firmware %s (%s)"
            % (wake.NAMES.get(self.wake_cause), self.session, self.firmware, self.slot)
        )
        if self.wake_cause == S.WAKE_BROWNOUT:
            self.event("brownout", "supply dipped during camera start", S.SEV_WARNING)
        if self.go_online():
            if self.birth():  # Wi-Fi + broker + birth published: the health check of an OTA
                ota_steps.boot_check(self)
            self.report_crash()
            if self.cfg_error:
                self.event("config_rejected", self.cfg_error, S.SEV_ERROR)
            self.flush_events()
            try:
                self.client.ping()  # everything queued while asleep has now arrived
            except OSError as e:
                self.lost(e)
            self.drain()
        elif otamod.pending(self.store) is not None:
            self.log("health check failed: not confirming the new image")
        self.apply_stay_awake()
        self.replay_spool()
        self.check_battery()
        self.plan_captures()
        self.run_captures()
        if self.online:
            self.telemetry()
            self.wait_receipts()
            ota_steps.download(self)
            self.stay_awake()
        return self.sleep()

    def stay_awake(self):
        while (
            self.online
            and self.stay_until is not None
            and time.ticks_diff(self.stay_until, time.ticks_ms()) > 0
        ):
            self.wdt.feed()
            self.drain(500)
            self.run_captures()
            ota_steps.download(self)

    def sleep(self):
        self.camera.stop()
        interval = cfgmod.get(self.cfg, "schedule", "interval_s")
        left = wake.interval_left(self.rtc, self.wake_cause, interval)
        if left is None and interval:
            left = interval * 1000
        if left is not None:
            left -= self.uptime_ms()  # the interval runs from the start of this wake
        ms, due = wake.next_wake(self.cfg, wake.now_ms() // 1000, left)
        if self.low_battery:
            ms, due = cfgmod.get(self.cfg, "sleep", "max_sleep_s") * 1000, "check"
        self.rtc["due"] = due
        self.rtc["slept"] = ms
        if left is None:
            self.rtc.pop("ileft", None)
        else:
            self.rtc["ileft"] = left
        self.rtc["awake"] = self.uptime_ms()
        if self.reboot_after is not None:
            self.rtc["rb"] = 1  # machine.reset() reports HARD_RESET, like a panic: mark ours
        wake.save_rtc(self.rtc)
        if self.online:
            now = wake.now_ms()
            state = self.state_msg(S.PRESENCE_ASLEEP, now + ms if now else 0)
            self.publish("state", state, retain=True)
            self.client.disconnect()
        if self.reboot_after is not None:
            time.sleep_ms(self.reboot_after)
            machine.reset()
        try:
            wake.arm(self.cfg.get("sleep") or {})
        except Exception as e:  # a config stored before pins were checked: sleep on the timer
            self.log("wake source not armed: %s" % e)
        self.log("sleep %d ms (%s), awake %d ms" % (ms, due, self.uptime_ms()))
        machine.deepsleep(ms)

    def log(self, text):
        text = "%d ms: %s" % (self.uptime_ms(), text)
        print("[node %s] %s" % (self.device_id, text))


def _hex(b):
    return "".join("%02x" % x for x in b)


def main():
    Node().run()
