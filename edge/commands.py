"""Commands from the controller: decode, check, run, and acknowledge each one.

Every command gets an Ack with a reason when it is not DONE: REJECTED (malformed, invalid
settings, unknown action, not allowed), EXPIRED (past ``expires_at_ms``), FAILED (tried: the
camera failed). A payload too broken to carry a command id cannot be acked; it is reported as an
``Event(type="command_rejected")`` instead. Commands run one at a time on their own thread so a
burst never blocks receipts or the MQTT loop; a redelivered command id is acked again, not re-run.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from camfleet.edge.cameras.base import CameraError
from camfleet.edge.cameras.settings import SettingsError, check, merged
from camfleet.proto import codec
from camfleet.proto.errors import ContractError
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, telemetry_pb2

if TYPE_CHECKING:
    from camfleet.edge.agent import EdgeAgent

log = logging.getLogger(__name__)

REMEMBER_IDS = 1000
A = command_pb2


class CommandHandler:
    def __init__(self, agent: EdgeAgent) -> None:
        self.agent = agent
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._done: OrderedDict[str, command_pb2.Ack] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # ends burst pacing and reboot delays early

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="edge-commands", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(30)

    def submit(self, payload: bytes) -> None:
        self._queue.put(payload)

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            try:
                self.handle(payload)
            except Exception:  # a bug in one command must not stop the next ones
                log.exception("%s: command handling failed", self.agent.device_id)

    # --- one command -------------------------------------------------------------------------

    def handle(self, payload: bytes) -> None:
        try:
            command = codec.decode(Kind.CMD, payload).message
        except ContractError as exc:
            command_id = _salvage_id(payload)
            if command_id:
                self.ack(command_id, A.ACK_STATUS_REJECTED, f"malformed command: {exc.detail}")
            else:
                self.agent.event(
                    "command_rejected",
                    f"malformed command: {exc}",
                    telemetry_pb2.SEVERITY_WARNING,
                    reason=exc.reason.value,
                )
            return
        assert isinstance(command, command_pb2.Command)
        previous = self._done.get(command.id)
        if previous is not None:  # QoS 1 redelivery: answer again, do not run twice
            self._send(previous)
            return
        if command.expires_at_ms and time.time() * 1000 > command.expires_at_ms:
            self.ack(command.id, A.ACK_STATUS_EXPIRED, "arrived after expires_at_ms; not run")
            return
        action = command.WhichOneof("action")
        run = getattr(self, f"_{action}", None)
        if run is None:
            self.ack(command.id, A.ACK_STATUS_REJECTED, f"action {action!r} is not supported")
            return
        run(command)

    def ack(
        self, command_id: str, status: int, detail: str = "", capture_ids: list[str] | None = None
    ) -> None:
        ack = command_pb2.Ack(
            command_id=command_id,
            status=status,  # type: ignore[arg-type]
            detail=detail,
            timestamp_ms=int(time.time() * 1000),
            session=self.agent.sessions.connected_session or self.agent.sessions.frame_session,
            capture_ids=capture_ids or [],
        )
        if status != A.ACK_STATUS_ACCEPTED:
            self._done[command_id] = ack
            while len(self._done) > REMEMBER_IDS:
                self._done.popitem(last=False)
        if detail and status not in (A.ACK_STATUS_DONE, A.ACK_STATUS_ACCEPTED):
            log.warning(
                "%s: command %s %s: %s",
                self.agent.device_id,
                command_id,
                A.AckStatus.Name(ack.status),
                detail,
            )
        self._send(ack)

    def _send(self, ack: command_pb2.Ack) -> None:
        self.agent.conn.publish(self.agent.topic(Kind.ACK), codec.encode(ack))

    # --- actions -----------------------------------------------------------------------------

    def _capture(self, command: command_pb2.Command) -> None:
        c = command.capture
        count = c.count or 1
        limit = self.agent.config.agent.max_burst
        if count > limit:
            self.ack(command.id, A.ACK_STATUS_REJECTED, f"count {count} exceeds max_burst {limit}")
            return
        if c.interval_ms > 60_000:
            self.ack(command.id, A.ACK_STATUS_REJECTED, "interval_ms above 60000")
            return
        overrides = c.overrides if c.HasField("overrides") else None
        try:
            if overrides is not None:
                check(overrides)
                self.agent.camera.validate(merged(self.agent.effective.camera, overrides))
        except SettingsError as exc:
            self.ack(command.id, A.ACK_STATUS_REJECTED, str(exc))
            return
        if count > 1:
            self.ack(command.id, A.ACK_STATUS_ACCEPTED, f"burst of {count}")
        ids: list[str] = []
        for i in range(count):
            if i and c.interval_ms and self._stopping.wait(c.interval_ms / 1000):
                self.ack(command.id, A.ACK_STATUS_FAILED, "agent stopping: burst cut short", ids)
                return
            try:
                frame = self.agent.capture(overrides, dict(c.metadata), command_id=command.id)
            except (CameraError, SettingsError) as exc:
                self.agent.event("camera_error", str(exc), telemetry_pb2.SEVERITY_ERROR)
                self.ack(command.id, A.ACK_STATUS_FAILED, f"camera error: {exc}", ids)
                return
            except OSError as exc:
                self.agent.event("spool_error", str(exc), telemetry_pb2.SEVERITY_CRITICAL)
                self.ack(command.id, A.ACK_STATUS_FAILED, f"cannot spool the frame: {exc}", ids)
                return
            ids.append(frame.capture_id)
        self.ack(command.id, A.ACK_STATUS_DONE, "", ids)

    def _set_config(self, command: command_pb2.Command) -> None:
        try:
            self.agent.set_config(command.set_config.config)
        except ValueError as exc:
            self.ack(command.id, A.ACK_STATUS_REJECTED, str(exc))
            return
        self.ack(command.id, A.ACK_STATUS_DONE)

    def _reboot(self, command: command_pb2.Command) -> None:
        r = command.reboot
        if not r.agent_only and not self.agent.config.agent.allow_machine_reboot:
            self.ack(
                command.id,
                A.ACK_STATUS_REJECTED,
                "machine reboot is disabled (agent.allow_machine_reboot = false); "
                "send agent_only to restart the agent",
            )
            return
        self.ack(
            command.id,
            A.ACK_STATUS_ACCEPTED,
            "restarting the agent" if r.agent_only else "rebooting the machine",
        )
        # Marked done before acting: after the restart a redelivery must not restart again.
        self._done[command.id] = command_pb2.Ack(command_id=command.id, status=A.ACK_STATUS_DONE)
        if r.delay_ms and self._stopping.wait(min(r.delay_ms, 60_000) / 1000):
            return  # stopping anyway
        if r.agent_only:
            self.agent.request_restart()
        else:
            subprocess.Popen(["systemctl", "reboot"])

    def _stay_awake(self, command: command_pb2.Command) -> None:
        self.ack(command.id, A.ACK_STATUS_DONE, "always awake: this agent never sleeps")

    def _reannounce(self, command: command_pb2.Command) -> None:
        self.agent.announce()
        self.ack(command.id, A.ACK_STATUS_DONE)

    def _ota_offer(self, command: command_pb2.Command) -> None:
        self.agent.ota.handle_offer(command)


def _salvage_id(payload: bytes) -> str:
    """The id of a command that parses but breaks a rule (no action, ...), else ''."""
    try:
        return command_pb2.Command.FromString(bytes(payload)).id
    except Exception:
        return ""
