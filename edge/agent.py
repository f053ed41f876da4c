"""The edge agent: camera + spool + MQTT session + commands + desired config + telemetry.

``EdgeAgent(config).run(stop_event)`` blocks until ``stop_event`` is set (the CLI and the demo
use it); ``start()``/``stop()`` are the same in two calls. Threads: the MQTT network thread
(paho callbacks only enqueue), a control thread (receipts and desired config), a command thread,
the spool sender, the local scheduler and telemetry. Camera access and frame numbering are
serialised by one lock, so frames are spooled in (session, seq) order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from camfleet import __version__
from camfleet.edge import cameras, device_config, jpeg, telemetry
from camfleet.edge.cameras.base import Camera, CameraError
from camfleet.edge.cameras.settings import merged
from camfleet.edge.commands import CommandHandler
from camfleet.edge.config import EdgeConfig
from camfleet.edge.mqtt import Connection
from camfleet.edge.ota import EdgeOta
from camfleet.edge.schedule import Schedule
from camfleet.edge.sender import SpoolSender
from camfleet.edge.sessions import SessionNumbers
from camfleet.edge.spool import Spool
from camfleet.edge.state import AgentState
from camfleet.edge.update import Slots
from camfleet.errors import UserError
from camfleet.proto import codec, credentials, signing
from camfleet.proto.errors import ContractError
from camfleet.proto.receipts import MAX_RANGES
from camfleet.proto.topics import (
    Kind,
    controller_state_topic,
    device_topic,
    latest_jpeg_topic,
    parse,
)
from camfleet.proto.v1 import (
    common_pb2,
    config_pb2,
    frame_pb2,
    state_pb2,
    telemetry_pb2,
)

log = logging.getLogger(__name__)

FrameObserver = Callable[[frame_pb2.Frame, bool], None]


def now_ms() -> int:
    return int(time.time() * 1000)


#: A receipt with more ranges than this is refused whole (controllers send at most MAX_RANGES;
#: the slack tolerates another controller version).
MAX_RECEIPT_RANGES = 4 * MAX_RANGES


class EdgeAgent:
    """One device. Safe to run several in one process (each with its own state dir)."""

    def __init__(self, config: EdgeConfig, camera: Camera | None = None) -> None:
        self.config = config
        self.device_id = config.device.id
        self.root = config.broker.root
        try:
            self.state = AgentState(config.agent.state_dir, fsync=config.spool.fsync)
            self.state.lock()  # before the spool scan, which removes leftover temp files
            self.spool = Spool(
                config.spool.dir,
                max_frames=config.spool.max_frames,
                max_bytes=config.spool.max_bytes,
                fsync=config.spool.fsync,
            )
        except OSError as exc:
            raise UserError(
                f"{config.source}: cannot use state/spool directory: {exc.strerror or exc} "
                f"({exc.filename or config.agent.state_dir})"
            ) from None
        options = {"label": self.device_id, **config.camera.options}
        if config.camera.backend in ("synthetic", "opencv", "maix"):  # they hand over pixels
            options.setdefault("encoder", config.frames.encoder)
        self.camera = camera or cameras.create(config.camera.backend, options)
        self.camera_status = "closed"
        self.file_config = device_config.from_file(config)
        self.file_schedule = Schedule(
            config.schedule.interval_s,
            config.schedule.cron,
            config.schedule.burst_count,
            config.schedule.burst_interval_ms,
        )
        self.desired = self.state.load_desired()
        self.overlay = self.state.load_overlay()
        self.effective = device_config.merge(self.file_config, self.desired.config, self.overlay)
        self.schedule = self.file_schedule
        self.observers: list[FrameObserver] = []
        # Extra birth info set by the launcher (self-update: the last version rolled back).
        self.birth_info: dict[str, str] = {}
        # The version in births; the launcher sets the manifest version of the slot it runs.
        self.firmware_version = config.device.firmware_version or __version__
        # The launcher's A/B slots (edge/update.py), shared with the download's install.
        self.slots: Slots | None = None
        self.reexec = False  # set when a new version is installed: run() returns to re-execute
        self.counters: dict[str, int] = {
            "frames": 0,
            "bad_messages": 0,
            "receipted": 0,
            "unsigned_refused": 0,
        }
        self._capture_lock = threading.Lock()
        # notified after every capture, receipt and controller presence change
        self.changed = threading.Condition()
        self.online = threading.Event()  # set while connected (after the birth)
        self._config_lock = threading.RLock()
        self._stop = threading.Event()
        self._restart = threading.Event()
        self._schedule_changed = threading.Event()
        # (kind, payload, retained, epoch of the connection it arrived on)
        self._control: queue.Queue[tuple[Kind, bytes, bool, int] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self.sessions: SessionNumbers
        self.conn: Connection
        self.sender: SpoolSender
        self.commands = CommandHandler(self)  # kept across restarts: it remembers command ids
        self.ota = EdgeOta(self)  # resumes an interrupted self-update download at start

    # --- lifecycle ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; a restart command restarts the components in place."""
        while True:
            self.start()
            while not stop.is_set() and not self._restart.is_set():
                stop.wait(0.2)
            restarting = self._restart.is_set() and not stop.is_set() and not self.reexec
            self.stop()
            if not restarting:
                return
            log.info("%s: restarting the agent", self.device_id)

    def start(self) -> None:
        self._stop.clear()
        self._restart.clear()
        # If the state dir was wiped but the spool kept, never reuse a spooled (session, seq).
        self.state.raise_to(self.spool.max_session())
        self.incarnation, self.incarnation_since = self.state.incarnation()
        self.sessions = SessionNumbers(self.state)
        self._open_camera()
        self._apply_effective(self.effective)
        self.conn = Connection(
            self.config,
            will=self._will,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            on_message=self._on_message,
            credentials=self.state.load_credentials(),
        )
        self.sender = SpoolSender(
            self.spool,
            self.conn,
            device_id=self.device_id,
            root=self.root,
            connected_session=lambda: self.sessions.connected_session,
            max_payload=lambda: self.effective.max_payload or self.config.broker.max_payload,
            window=self.config.broker.inflight,
            resend_after_s=self.config.spool.resend_after_s,
            on_corrupt=lambda msg: self.event("spool_corrupt", msg, telemetry_pb2.SEVERITY_ERROR),
        )
        self._control = queue.Queue()
        self._threads = [
            threading.Thread(target=self._control_loop, name="edge-control", daemon=True),
            threading.Thread(target=self._schedule_loop, name="edge-schedule", daemon=True),
            threading.Thread(target=self._telemetry_loop, name="edge-telemetry", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.commands.start()
        self.sender.start()
        self.conn.start()
        self.ota.start()

    def stop(self) -> None:
        """Orderly shutdown: OFFLINE state with the same session, clean disconnect, camera off."""
        self._stop.set()
        self._schedule_changed.set()
        self._control.put(None)
        self.ota.stop()
        self.commands.stop()
        for t in self._threads:
            t.join(10)
        self.sender.stop()
        self.conn.close(
            final=(
                self.conn.state_topic,
                self._state_payload(state_pb2.PRESENCE_OFFLINE, self.conn.session),
            )
        )
        with self._capture_lock:
            self.camera.close()
            self.camera_status = "closed"

    def close(self) -> None:
        """Release the state dir (the process exiting does it too); call after stop()/run()."""
        self.state.unlock()

    def request_restart(self) -> None:
        self._restart.set()

    def request_reexec(self) -> None:
        """A new version is installed: stop, and let the launcher (edge/cli.py) start it."""
        self.reexec = True
        self._restart.set()

    def _open_camera(self) -> None:
        try:
            self.camera.open()
            self.camera_status = "ok"
        except CameraError as exc:
            self.camera_status = "init_failed"
            log.error("%s: camera failed to open: %s", self.device_id, exc)

    # --- presence ----------------------------------------------------------------------------

    def topic(self, kind: Kind) -> str:
        return device_topic(self.device_id, kind, self.root)

    def _state_payload(self, presence: int, session: int) -> bytes:
        caps = self.camera.capabilities()
        state = state_pb2.DeviceState(
            presence=presence,  # type: ignore[arg-type]
            session=session,
            incarnation=self.incarnation,
            timestamp_ms=now_ms(),
            firmware_version=self.firmware_version,
            platform=caps.platform,
            board=self.config.device.board,
            capabilities=sorted(
                {"jpeg", "chunks", "spool", "desired", "burst", *self._features, *caps.features}
                # takes edge-bundle offers (the controller skips agents without it)
                | ({"self_update"} if self.config.agent.update_public_key else set())
            ),
            wake_cause=common_pb2.WAKE_CAUSE_ALWAYS_ON,
            desired_version=self.desired.version,
            max_payload=self.effective.max_payload or self.config.broker.max_payload,
            groups=list(self.config.device.groups),
        )
        state.info.update(
            {
                "camera_backend": self.config.camera.backend,
                **caps.info,
                "camera_status": self.camera_status,
                **self.birth_info,
            }
        )
        return codec.encode(state)

    @property
    def _features(self) -> tuple[str, ...]:
        # "credentials": takes a new broker password in its desired config (`camfleet device
        # rotate`); it needs the key to decrypt it and a password identity (not a certificate).
        takes = self.config.device.key and self.config.broker.cert_file is None
        return ("credentials",) if takes else ()

    def _will(self) -> tuple[int, bytes]:
        session = self.sessions.for_connect()
        return session, self._state_payload(state_pb2.PRESENCE_OFFLINE, session)

    def _on_connected(self, session: int) -> None:
        self.sessions.connected(session)
        self.announce()
        self.online.set()

    def _on_disconnected(self) -> None:
        self.online.clear()
        self.sessions.disconnected()

    def announce(self) -> None:
        """Birth (retained), reported config (retained) and a telemetry sample."""
        session = self.sessions.connected_session
        self.conn.publish(
            self.topic(Kind.STATE),
            self._state_payload(state_pb2.PRESENCE_ONLINE, session),
            retain=True,
        )
        self.publish_reported()
        self.publish_telemetry()

    # --- publishing helpers ------------------------------------------------------------------

    def event(
        self,
        type_: str,
        message: str,
        severity: int = telemetry_pb2.SEVERITY_INFO,
        ota: telemetry_pb2.OtaProgress | None = None,
        **attributes: str,
    ) -> None:
        ev = telemetry_pb2.Event(
            timestamp_ms=now_ms(),
            session=self.sessions.frame_session,
            type=type_,
            severity=severity,  # type: ignore[arg-type]
            message=message,
            uptime_ms=telemetry.system_uptime_ms(),
        )
        ev.attributes.update(attributes)
        if ota is not None:
            ev.ota.CopyFrom(ota)
        self.conn.publish(self.topic(Kind.EVENT), codec.encode(ev))

    def publish_reported(self, version: int | None = None, error: str = "") -> None:
        rep = config_pb2.Reported(
            version=self.desired.version if version is None else version,
            applied_at_ms=now_ms(),
            error=error,
            session=self.sessions.connected_session,
            identity=self.conn.username,
        )
        rep.config.CopyFrom(self.effective)
        self.conn.publish(self.topic(Kind.REPORTED), codec.encode(rep), retain=True)

    def publish_telemetry(self) -> None:
        if not self.sessions.connected_session:
            return  # QoS 0 sample: nothing to keep while offline
        t = telemetry.read(
            session=self.sessions.connected_session,
            spool_dir=self.spool.directory,
            spool_depth=self.spool.depth,
            spool_bytes=self.spool.total_bytes,
            camera_status=self.camera_status,
        )
        self.conn.publish(self.topic(Kind.TELEMETRY), codec.encode(t), qos=0)

    # --- capture -----------------------------------------------------------------------------

    def capture(
        self,
        overrides: common_pb2.CameraSettings | None = None,
        metadata: dict[str, str] | None = None,
        command_id: str = "",
    ) -> frame_pb2.Frame:
        """Capture one frame, spool it durably, and let the sender publish it.

        Raises CameraError (the camera failed) or SettingsError (bad overrides).
        """
        with self._config_lock:
            settings = merged(self.effective.camera, overrides)
        frames = self.config.frames
        with self._capture_lock:
            if self.camera_status != "ok":
                self._open_camera()  # retry a camera that failed to open
                if self.camera_status != "ok":
                    raise CameraError("camera is not available (failed to open)")
            self.camera.validate(settings)
            try:
                cap = self.camera.capture(settings)
            except CameraError:
                # Close it so the next capture reopens it: the usual cure for a hung camera.
                self.camera_status = "capture_failed"
                try:
                    self.camera.close()
                except Exception:
                    log.exception("%s: closing the failed camera", self.device_id)
                raise
            captured_at = now_ms()
            data = cap.jpeg
            if frames.exif:
                data = jpeg.with_exif(
                    data,
                    jpeg.exif_bytes(
                        device_id=self.device_id,
                        captured_at_ms=captured_at,
                        board=self.config.device.board,
                        software=f"camfleet {__version__}",
                        location=self.config.device.location,
                    ),
                )
            session, seq = self.sessions.next_frame()
            meta = dict(cap.metadata)
            if self.config.device.location:
                meta.update(
                    {f"location_{k}": str(v) for k, v in self.config.device.location.items()}
                )
            meta.update(metadata or {})
            frame = codec.make_frame(
                data,
                incarnation=self.incarnation,
                session=session,
                seq=seq,
                captured_at_ms=captured_at,
                settings=cap.settings,
                metadata=meta,
                wake_cause=common_pb2.WAKE_CAUSE_ALWAYS_ON,
                width=cap.width,
                height=cap.height,
                command_id=command_id,
                uptime_ms=telemetry.system_uptime_ms(),
            )
            dropped = self.spool.put(frame)
            online = self.sessions.connected_session == session
            self.counters["frames"] += 1
        self.sender.wake()
        if dropped:
            self.event(
                "spool_dropped",
                f"spool full: dropped {len(dropped)} oldest frame(s)",
                telemetry_pb2.SEVERITY_WARNING,
                count=str(len(dropped)),
                first=f"{dropped[0].session}-{dropped[0].seq}",
                last=f"{dropped[-1].session}-{dropped[-1].seq}",
            )
        if frames.latest_jpeg and self.conn.connected.is_set():
            small = jpeg.preview(data, frames.preview_max_side) if frames.preview_max_side else data
            self.conn.publish(
                latest_jpeg_topic(self.device_id, frames.latest_jpeg_prefix),
                small,
                qos=0,
                retain=True,
            )
        for observer in self.observers:
            observer(frame, online)
        self._notify()
        return frame

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds (checked after each capture/receipt) or timeout."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    # --- incoming messages -------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        try:
            kind = parse(topic, self.root).kind
        except ContractError as exc:
            self._bad_message(topic, str(exc))
            return
        key = self.config.device.key
        if key and kind in signing.SIGNED_KINDS and payload:
            # Before anything else reads it: a message that is not signed with this device's
            # key (a misconfigured ACL, a compromised broker, a group-topic command) is refused.
            # (An empty payload clears a retained topic and carries nothing to act on.)
            body = signing.verify(key, kind, self.device_id, payload)
            if body is None:
                self._refuse_unsigned(topic, kind)
                return
            payload = body
        if kind == Kind.CMD:
            self.commands.submit(payload)
        elif kind == Kind.OTA_BLOCK:
            why = self.ota.on_block(payload)
            if why:
                self._bad_message(topic, why)
        else:  # receipts, desired, and the controller's presence (the only state subscribed)
            self._control.put((kind, payload, retained, self.conn.epoch))

    def _refuse_unsigned(self, topic: str, kind: Kind) -> None:
        self.counters["unsigned_refused"] += 1
        log.warning("%s: refused a %s without a valid signature on %s", self.device_id, kind, topic)
        self.event(
            "signature_refused",
            f"{kind.value} on {topic} refused: no valid signature with this device's key",
            telemetry_pb2.SEVERITY_WARNING,
            kind=kind.value,
        )

    def _bad_message(self, topic: str, why: str) -> None:
        self.counters["bad_messages"] += 1
        log.warning("%s: ignored message on %s: %s", self.device_id, topic, why)

    def _control_loop(self) -> None:
        while True:
            item = self._control.get()
            if item is None:
                return
            kind, payload, retained, epoch = item
            try:
                if kind == Kind.RECEIPT:
                    self._handle_receipt(payload)
                elif kind == Kind.DESIRED:
                    self._handle_desired(payload)
                elif kind == Kind.STATE:
                    self._handle_controller_state(payload, retained, epoch)
            except Exception:  # never let one message kill the agent
                log.exception("%s: error handling %s", self.device_id, kind.value)

    def _handle_receipt(self, payload: bytes) -> None:
        try:
            receipt = codec.decode(Kind.RECEIPT, payload).message
        except ContractError as exc:
            self._bad_message(self.topic(Kind.RECEIPT), str(exc))
            return
        assert isinstance(receipt, frame_pb2.Receipt)
        if len(receipt.stored) > MAX_RECEIPT_RANGES:
            self._bad_message(
                self.topic(Kind.RECEIPT),
                f"{len(receipt.stored)} ranges (controllers send at most {MAX_RANGES}): ignored",
            )
            return
        deleted = self.spool.apply_receipt(
            receipt, self.incarnation, self.incarnation_since, self.sender.was_sent
        )
        self.counters["receipted"] += len(deleted)
        self.sender.receipt_arrived()
        self._notify()

    def _handle_controller_state(self, payload: bytes, retained: bool, epoch: int) -> None:
        """The controller's presence. A live ONLINE birth means it has (re)connected and
        subscribed, so frames sent while it was away (a broker crash may have lost them with
        its subscription) go again at once; the retained copy handed over on our own subscribe
        only tells whether it is there. Either ONLINE releases the frames held on a connection
        whose broker lost the session (edge/sender.py). While it is known to be OFFLINE, timed
        resends pause (its next birth triggers one)."""
        if not payload:
            self.sender.controller_online = None  # presence cleared: unknown
            return
        try:
            state = codec.decode_as(state_pb2.ControllerState, payload).message
        except ContractError as exc:
            self._bad_message(controller_state_topic(self.root), str(exc))
            return
        online = state.presence == state_pb2.PRESENCE_ONLINE
        self.sender.controller_online = online
        if online:
            self.sender.controller_present(epoch)
        self._notify()
        if online and not retained:
            log.info(
                "%s: controller %s is online: sending unreceipted frames again",
                self.device_id,
                state.instance_id,
            )
            self.sender.rewind()

    def _handle_desired(self, payload: bytes) -> None:
        if not payload:
            return  # retained desired cleared: keep running what we have
        try:
            desired = codec.decode(Kind.DESIRED, payload).message
        except ContractError as exc:
            self._bad_message(self.topic(Kind.DESIRED), str(exc))
            self.event(
                "config_rejected",
                f"malformed desired config: {exc}",
                telemetry_pb2.SEVERITY_WARNING,
            )
            return
        assert isinstance(desired, config_pb2.Desired)
        with self._config_lock:
            if desired.version < self.desired.version:
                return  # an older version: the device applies the highest
            if desired.version == self.desired.version:
                self.publish_reported()
                return
            # Credentials first and whatever the config says: a refused config must not leave
            # the device on an identity that is about to be retired.
            if desired.HasField("credentials"):
                self._take_credentials(desired.credentials)
            effective = device_config.merge(self.file_config, desired.config)
            try:
                device_config.validate(effective, self.camera, self.config.agent.max_burst)
            except ValueError as exc:
                self.publish_reported(desired.version, error=str(exc))
                self.event(
                    "config_rejected",
                    f"desired version {desired.version}: {exc}",
                    telemetry_pb2.SEVERITY_WARNING,
                    version=str(desired.version),
                )
                return
            self.desired = desired
            self.overlay = config_pb2.DeviceConfig()
            self.state.save_desired(desired)
            self.state.save_overlay(self.overlay)
            self._apply_effective(effective)
            self.publish_reported()

    def _take_credentials(self, creds: config_pb2.BrokerCredentials) -> None:
        """New broker credentials (already verified: the Desired's signature covers them):
        stored before use, then the connection switches to them. The previous identity stays as
        the fallback until it is retired."""
        if creds.username == self.conn.username or "credentials" not in self._features:
            return
        password = credentials.open_password(self.config.device.key, self.device_id, creds)
        if password is None:
            self.event(
                "credentials_refused",
                f"broker credentials for {creds.username} cannot be decrypted with this "
                "device's key",
                telemetry_pb2.SEVERITY_ERROR,
            )
            return
        identities = [(creds.username, password), *self.conn.identities]
        self.state.save_credentials(identities[:2])
        log.info("%s: switching to broker identity %s", self.device_id, creds.username)
        self.conn.switch_identity(creds.username, password)

    def set_config(self, change: config_pb2.DeviceConfig) -> None:
        """Merge a SetConfig change on top, validate, persist and apply; ValueError if refused."""
        with self._config_lock:
            overlay = device_config.merge(self.overlay, change)
            effective = device_config.merge(self.file_config, self.desired.config, overlay)
            device_config.validate(effective, self.camera, self.config.agent.max_burst)
            self.overlay = overlay
            self.state.save_overlay(overlay)
            self._apply_effective(effective)
        self.publish_reported()

    def _apply_effective(self, effective: config_pb2.DeviceConfig) -> None:
        self.effective = effective
        remote = device_config.merge(self.desired.config, self.overlay)
        schedule = device_config.schedule_of(effective, remote, self.file_schedule)
        if schedule != self.schedule:
            self.schedule = schedule
            self._schedule_changed.set()
        if effective.HasField("spool_max_frames"):
            self.spool.max_frames = effective.spool_max_frames
        if effective.HasField("spool_max_bytes"):
            self.spool.max_bytes = effective.spool_max_bytes

    # --- timers ------------------------------------------------------------------------------

    def _schedule_loop(self) -> None:
        due: float | None = None
        schedule = self.schedule
        while not self._stop.is_set():
            if self._schedule_changed.is_set():
                self._schedule_changed.clear()
                schedule, due = self.schedule, None
            # Intervals run on the monotonic clock (immune to NTP steps, e.g. a Pi without RTC
            # setting its clock after boot); cron and daily times need the wall clock.
            now = time.monotonic() if schedule.interval_s > 0 else time.time()
            due = schedule.next_due(due, now)
            if due is None:
                self._schedule_changed.wait()
                continue
            if due > now and self._schedule_changed.wait(due - now):
                continue  # schedule changed (or stopping): recompute
            if self._stop.is_set():
                return
            try:
                self._scheduled_capture(schedule)
            except Exception:  # never let one slot end the schedule
                log.exception("%s: scheduled capture failed", self.device_id)

    def _scheduled_capture(self, schedule: Schedule) -> None:
        for i in range(schedule.burst_count):
            if i and self._stop.wait(schedule.burst_interval_ms / 1000):
                return
            try:
                self.capture(metadata={"trigger": "schedule"})
            except (CameraError, ValueError) as exc:
                log.error("%s: scheduled capture failed: %s", self.device_id, exc)
                self.event("camera_error", str(exc), telemetry_pb2.SEVERITY_ERROR)
                return
            except OSError as exc:  # spool write failed (disk full, read-only): keep running
                log.error("%s: cannot spool the frame: %s", self.device_id, exc)
                self.event("spool_error", str(exc), telemetry_pb2.SEVERITY_CRITICAL)
                return

    def _telemetry_loop(self) -> None:
        while not self._stop.is_set():
            if self.effective.HasField("telemetry_interval_s"):
                interval = float(self.effective.telemetry_interval_s)
            else:
                interval = self.config.agent.telemetry_interval_s
            if self._stop.wait(interval if interval > 0 else 5.0):
                return
            if interval <= 0:
                continue  # 0 = periodic telemetry off (re-announce still sends a sample)
            try:
                self.publish_telemetry()
            except Exception:
                log.exception("%s: telemetry failed", self.device_id)
