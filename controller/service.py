"""The controller service: wires the channel, dispatcher, writer, registry, commands, desired
state, scheduler, retention, integrations and the HTTP API, and runs their periodic work.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camfleet import __version__
from camfleet.controller import registry
from camfleet.controller.births import BirthWorker
from camfleet.controller.commands import Commands
from camfleet.controller.comms.mqtt import MqttChannel, speaks_mqtt5
from camfleet.controller.config import ControllerConfig
from camfleet.controller.desired import DesiredState
from camfleet.controller.device_keys import DeviceKeys
from camfleet.controller.dispatcher import Dispatcher
from camfleet.controller.frames.store import LocalFrameStore
from camfleet.controller.ingest.diskspace import DiskGuard
from camfleet.controller.ingest.jobs import AfterCommit, Job
from camfleet.controller.ingest.writer import BatchResult, Writer
from camfleet.controller.integrations import HomeAssistant
from camfleet.controller.live import LiveEvents
from camfleet.controller.metric_catalog import declare_counters
from camfleet.controller.metrics import Metrics
from camfleet.controller.ota.artifacts import ArtifactStore
from camfleet.controller.ota.bundles import load_edge_public_key
from camfleet.controller.ota.delivery import BlockServer
from camfleet.controller.ota.images import ota_slot_size
from camfleet.controller.ota.rollouts import Rollouts
from camfleet.controller.retention import Retention
from camfleet.controller.scheduler import Scheduler
from camfleet.controller.signing import Signer
from camfleet.controller.storage import Tx, open_database
from camfleet.controller.storage.migrations import migrate
from camfleet.controller.users import Users
from camfleet.controller.web.thumbs import ThumbCache
from camfleet.errors import UserError
from camfleet.mqtt_url import BrokerUrl
from camfleet.proto import codec, topics
from camfleet.proto.errors import ContractError
from camfleet.proto.receipts import make_receipts
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, state_pb2, telemetry_pb2

log = logging.getLogger("camfleet.controller")


def now_ms() -> int:
    return int(time.time() * 1000)


def _read_or_create(path: Path, make: Callable[[], str]) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = make()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)
        return value


def _segment_bytes(data: Path) -> int:
    """Frame-log segment size: 64 MiB, or a sixteenth of the free space on a small filesystem
    (a segment is preallocated whole), never under 1 MiB."""
    try:
        st = os.statvfs(data)
        free = st.f_bavail * st.f_frsize
    except OSError:
        return 64 * 1024 * 1024
    mib = 1024 * 1024
    return max(mib, min(64 * mib, free // 16 // mib * mib))


def _public_key(path: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read ota_public_key {path}: {exc}") from None


class Controller:
    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        root = config.root
        topics.validate_root(root)
        self.data = Path(config.data)
        self.data.mkdir(parents=True, exist_ok=True)
        self.instance_id = _read_or_create(self.data / "instance-id", lambda: secrets.token_hex(4))
        #: True when this start generated the API token (the CLI says so, and where it is).
        self.token_generated = not config.token and not (self.data / "api-token").exists()
        self.token = config.token or _read_or_create(
            self.data / "api-token", lambda: secrets.token_urlsafe(24)
        )
        self.metrics = Metrics()
        self.db = open_database(config.database, self.data / "registry.sqlite3")
        self.users = Users(self.db, self.token)
        migrate(self.db)
        self.disk = DiskGuard(self.data, config.disk_low_bytes, config.disk_resume_bytes)
        self.disk.check(force=True)
        self.store = LocalFrameStore(
            self.data, threads=config.file_threads, segment_bytes=_segment_bytes(self.data)
        )
        broker = BrokerUrl.parse(config.broker)
        protocol = config.mqtt_protocol
        if protocol == "auto":
            # MQTT 5 for its Receive Maximum, 3.1.1 for brokers without 5 (amqtt); a broker
            # not reachable yet gets 5 (mosquitto, EMQX, HiveMQ all speak it).
            protocol = "3.1.1" if speaks_mqtt5(broker) is False else "5"
            log.info("MQTT protocol %s", protocol)
        self.channel = MqttChannel(
            broker,
            config.client_id or f"camfleet-controller-{self.instance_id}",
            self._on_message,
            root=root,
            share_group=config.share_group or None,
            instance_id=self.instance_id,
            version=__version__,
            protocol=protocol,
            receive_maximum=config.receive_maximum,
        )
        # Receipts, commands and desired config carry the device's signature (signing.py).
        self.device_keys = DeviceKeys(self.db, cache_s=1.0)
        self.signer = Signer(self.device_keys, root)
        publish = self._publish = self.signer.wrap(self.channel.publish)
        self.commands = Commands(
            self.db,
            publish,
            self.metrics,
            root,
            default_expiry_s=config.command_expiry_s,
            resend_after_s=config.command_resend_s,
        )
        self.desired = DesiredState(self.db, publish, root)
        self.scheduler = Scheduler(
            self.db,
            self.commands,
            self.desired,
            self.metrics,
            misfire_grace_s=config.misfire_grace_s,
        )
        self.desired.schedule_layer = self.scheduler.schedule_layer
        self.artifacts = ArtifactStore(
            self.db,
            self.data / "ota",
            _public_key(config.ota_public_key),
            ota_slot_size(),
            load_edge_public_key(config.ota_edge_public_key),
        )
        self.blocks = BlockServer(
            self.artifacts,
            publish,
            self.metrics,
            root,
            max_transfers=config.ota_max_transfers,
            blocks_per_s=config.ota_blocks_per_s,
        )
        self.rollouts = Rollouts(self.db, self.artifacts, self.commands, root)
        self.blocks.on_served = self.rollouts.on_served
        self.retention = Retention(self.db, self.store, config, self.metrics)
        self._telemetry = registry.History("telemetry", config.telemetry_history)
        self._events = registry.History("events", config.event_history)
        #: What the writer just committed, for Home Assistant and the dashboard (live.py).
        self.live = LiveEvents()
        self.thumbs = ThumbCache(self.data / "thumbs")
        self.home_assistant = (
            HomeAssistant(
                publish,
                config.jpeg_prefix,
                config.ha_prefix,
                state_prefix=config.ha_state_prefix,
                capture=self._ha_capture,
            )
            if config.home_assistant
            else None
        )
        if self.home_assistant is not None:
            self.live.subscribe(self.home_assistant.on_event)
            self.channel.extra_subscriptions[self.home_assistant.button_filter] = (
                self.home_assistant.on_button
            )
        self.writer = Writer(
            self.db,
            self.store,
            {
                Kind.STATE: self._apply_state,
                Kind.TELEMETRY: self._apply_telemetry,
                Kind.EVENT: self._apply_event,
                Kind.ACK: self._apply_ack,
                Kind.REPORTED: self.desired.apply_reported,
            },
            self._on_batch,
            self.metrics,
            max_batch=config.batch_max,
            disk=self.disk,
            after_ack=self._after_ack,
        )
        self.commands.write = self.writer.call  # "sent" marks: one statement per batch
        self.commands.keys_batch = self.device_keys.batch
        self.dispatcher = Dispatcher(
            self.writer,
            self.metrics,
            root,
            chunk_timeout_s=config.chunk_timeout_s,
            chunk_sets_per_device=config.chunk_sets_per_device,
            decode_thread=config.decode_thread,
            ota_requests=self.blocks.submit,
            on_controller_state=self._on_controller_state,
        )
        self.births = BirthWorker(self._after_births)
        self.channel.on_connected.append(self._on_connected)
        self.disk.on_change.append(self._on_disk_change)
        self._presence_lock = threading.Lock()
        self._presence_asserted = 0.0
        self._presence_due = False
        #: Called after every committed batch (tests and the API wait on it).
        self.batch_listeners: list[Callable[[BatchResult], None]] = []
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="camfleet-tick", daemon=True)
        self._http: object | None = None
        self._describe_metrics()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, http: bool = True) -> None:
        if self.home_assistant is not None:
            self.home_assistant.start()
        self.births.start()
        self.writer.start()
        self.blocks.start()
        self.dispatcher.start()
        if http and self.config.http:
            from camfleet.controller.api.server import HttpServer

            server = HttpServer(self, *self.config.http_host_port)
            server.start()
            self._http = server
        # The broker last: our presence says ONLINE only once the API answers.
        self.channel.start()
        self._ticker.start()
        log.info("controller %s started; data in %s", self.instance_id, self.data)

    def stop(self) -> None:
        self._stop.set()
        self.live.publish({"type": "closing"})  # ends the dashboard's event streams
        if self._http is not None:
            self._http.stop()  # type: ignore[attr-defined]
        self.channel.stop()
        self.dispatcher.stop()
        self.blocks.stop()
        self.writer.stop()
        self.births.stop()
        if self.home_assistant is not None:
            self.home_assistant.stop()
        self._ticker.join(5)
        self.db.close()

    def _on_connected(self) -> None:
        # The broker may have restarted without persistence: publish what it should hold.
        self.commands.flush()
        self.desired.publish_all()

    def _tick_loop(self) -> None:
        last_retention = time.monotonic()
        while not self._stop.wait(self.config.tick_s):
            for name, step in (
                ("disk", self.disk.check),
                ("presence", self._presence_tick),
                ("reassembly", self.dispatcher.expire),
                ("scheduler", self.scheduler.tick),
                ("commands", self.commands.flush),
                ("rollouts", self.rollouts.tick),
            ):
                try:
                    step()
                except Exception:
                    log.exception("periodic %s step failed", name)
            if time.monotonic() - last_retention >= self.config.retention_interval_s:
                last_retention = time.monotonic()
                try:
                    self.retention.run()
                    self.retention.trim_commands()
                except Exception:
                    log.exception("retention failed")

    # --- ingest -------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, retain: bool, ack):  # type: ignore[no-untyped-def]
        self.dispatcher.on_message(topic, payload, mid, qos, retain, ack)

    def _apply_state(self, tx: Tx, job: Job) -> AfterCommit | None:
        st = job.message
        assert isinstance(st, state_pb2.DeviceState)
        outcome = registry.apply_state(tx, job.device_id, st, job.received_ms)
        self.metrics.inc("states_total", outcome=outcome)
        if outcome == "stale":
            return None
        device = job.device_id
        event = {
            "type": "state",
            "device_id": device,
            "presence": registry.PRESENCE_NAMES.get(st.presence, "unknown"),
            "next_wake_ms": st.next_wake_ms or None,
        }
        birth = outcome == "new" or st.presence == state_pb2.PRESENCE_ONLINE

        def after() -> None:
            if birth:
                self._after_birth(device)
            self.live.publish(event)

        return after

    def _after_birth(self, device_id: str) -> None:
        self.births.submit(device_id)

    def _after_births(self, device_ids: list[str]) -> None:
        # A new device (or one whose groups may have changed) may need group defaults or a
        # compiled schedule; refresh is a no-op when nothing changed. Commands it has not
        # acknowledged may never have reached it: publish them again.
        self.desired.refresh(device_ids)
        self.commands.resend_after_birth(device_ids)

    # --- presence and disk ----------------------------------------------------------------------

    def _on_controller_state(self, payload: bytes) -> None:
        """A message on the controller presence topic (network thread). Any ONLINE is fine
        (ours or another controller's); anything else while we run (a forged or stale OFFLINE,
        a cleared topic) would tell devices nobody is there: say ONLINE again, at most every
        2 s (two controllers never answer each other's ONLINE, so they cannot loop)."""
        if self._stop.is_set():
            return
        try:
            st = codec.decode_as(state_pb2.ControllerState, payload).message if payload else None
        except ContractError:
            st = None
        if st is not None and st.presence == state_pb2.PRESENCE_ONLINE:
            return
        self.metrics.inc("controller_presence_reasserted_total")
        with self._presence_lock:
            self._presence_due = True
        self._presence_tick()

    def _presence_tick(self) -> None:
        with self._presence_lock:
            if not self._presence_due or time.monotonic() - self._presence_asserted < 2.0:
                return
            if not self.channel.connected.is_set() or self._stop.is_set():
                return
            self._presence_due = False
            self._presence_asserted = time.monotonic()
        log.warning("controller presence was overwritten: publishing ONLINE again")
        self.channel.publish_presence()

    def _on_disk_change(self, low: bool) -> None:
        if not low and self.channel.connected.is_set():
            # A live ONLINE makes connected edge agents send their unreceipted frames at once.
            self.channel.publish_presence()

    def health(self) -> dict[str, Any]:
        """What /health reports: ``ok``, or ``degraded`` with the reasons."""
        connected = self.channel.connected.is_set()
        reasons = []
        if not connected:
            reasons.append("not connected to the broker")
        if self.disk.low:
            reasons.append(self.disk.reason)
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "mqtt_connected": connected,
            "accepting_frames": not self.disk.low,
            "disk_free_bytes": self.disk.free_bytes,
            "writer_queue": self.writer.depth(),
            "instance_id": self.instance_id,
            "version": __version__,
        }

    def _apply_telemetry(self, tx: Tx, job: Job) -> AfterCommit | None:
        assert isinstance(job.message, telemetry_pb2.Telemetry)
        t = job.message
        registry.add_telemetry(tx, job.device_id, t, job.received_ms, self._telemetry)
        event = {
            "type": "telemetry",
            "device_id": job.device_id,
            "received_ms": job.received_ms,
            "battery_pct": t.battery_pct if t.HasField("battery_pct") else None,
            "rssi_dbm": t.rssi_dbm if t.HasField("rssi_dbm") else None,
            "spool_depth": t.spool_depth if t.HasField("spool_depth") else None,
        }
        return lambda: self.live.publish(event)

    def _apply_event(self, tx: Tx, job: Job) -> AfterCommit | None:
        assert isinstance(job.message, telemetry_pb2.Event)
        e = job.message
        registry.add_event(tx, job.device_id, e, job.received_ms, self._events)
        rollout_after = self.rollouts.apply_event(tx, job)
        event = {
            "type": "event",
            "device_id": job.device_id,
            "received_ms": job.received_ms,
            "event": e.type,
            "message": e.message,
        }

        def after() -> None:
            if rollout_after is not None:
                rollout_after()
            self.live.publish(event)

        return after

    def _apply_ack(self, tx: Tx, job: Job) -> AfterCommit | None:
        after = self.commands.apply_ack(tx, job)
        self.rollouts.apply_ack(tx, job)
        assert isinstance(job.message, command_pb2.Ack)
        event = {"type": "command", "device_id": job.device_id, "id": job.message.command_id}

        def done() -> None:
            if after is not None:
                after()
            self.live.publish(event)

        return done

    def _ha_capture(self, device_id: str) -> None:
        """A Home Assistant capture button press: a capture command, for a known device only
        (anyone who may publish on the button topic must not fill the registry)."""
        with self.db.read() as tx:
            known = tx.scalar("SELECT 1 FROM devices WHERE device_id = ?", (device_id,))
        if known is None:
            log.warning("Home Assistant capture for unknown device %s ignored", device_id)
            return
        self.commands.create("capture", {}, device_id)

    def _on_batch(self, result: BatchResult) -> None:
        now = now_ms()
        receipted = result.receipted()
        with self.device_keys.batch(receipted):
            for device_id, by_incarnation in receipted.items():
                for receipt in make_receipts(by_incarnation, now):
                    self._publish(
                        topics.device_topic(device_id, Kind.RECEIPT, self.config.root),
                        codec.encode(receipt),
                        qos=1,
                    )
                    self.metrics.inc("receipts_sent_total")
        for listener in self.batch_listeners:
            listener(result)

    def _after_ack(self, result: BatchResult) -> None:
        if self.home_assistant is not None:
            self.home_assistant.on_batch(result)
        for stored in result.frames:
            if stored.new:
                f = stored.frame
                self.live.publish(
                    {
                        "type": "frame",
                        "device_id": stored.device_id,
                        "frame_id": f"{f.session}-{f.seq}",
                        "captured_at_ms": f.captured_at_ms,
                        "historical": f.historical,
                        "command_id": f.command_id,
                    }
                )

    # --- queries used by the API and tests ----------------------------------------------------

    def device_state(self, row: dict[str, Any]) -> str:
        return registry.derive_state(
            row,
            now_ms(),
            int(self.config.overdue_grace_s * 1000),
            int(max(self.config.overdue_grace_s, 60) * 1000),
        )

    def _describe_metrics(self) -> None:
        m = self.metrics
        declare_counters(m)  # every counter at 0 from start, with its HELP text
        m.gauge(
            "ota_active_transfers",
            "Devices being served OTA blocks.",
            lambda: float(self.blocks.active_transfers()),
        )
        m.gauge("writer_queue_depth", "Jobs waiting for the writer.", lambda: self.writer.depth())
        m.gauge(
            "decode_queue_depth", "Frames waiting for the decoder.", lambda: self.dispatcher.depth()
        )
        m.gauge(
            "reassembly_pending_frames",
            "Chunked frames waiting for chunks.",
            lambda: self.dispatcher.reassembler.stats.pending_frames,
        )
        m.gauge(
            "births_pending", "Devices waiting for after-birth work.", lambda: self.births.depth()
        )
        m.gauge(
            "accepting_frames",
            "0 while disk space is under the low watermark (frames refused).",
            lambda: float(not self.disk.low),
        )
        m.gauge(
            "mqtt_connected",
            "1 when connected to the broker.",
            lambda: float(self.channel.connected.is_set()),
        )
