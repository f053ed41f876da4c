"""Commands: created from the API/CLI or the scheduler, tracked in the registry (an outbox).

Life of a command: ``queued`` (row committed) -> ``sent`` (the broker PUBACKed it: it now waits
in the device's persistent session if the device sleeps; shown as pending) -> the device's acks:
``accepted`` -> ``done`` | ``failed`` | ``expired`` | ``rejected``. The controller marks a command
``expired`` itself when its expiry passes without a final ack; a later device ack still wins,
since the device knows what really happened. Publication is retried: a queued command whose
PUBACK did not come within ``resend_after_s`` (broker down, controller killed) is published
again, with the same id (devices deduplicate by id), and so is every command still ``sent``
when its device announces a new birth (the broker drops a publish for a device that has no
session yet, e.g. one that never connected). A group command becomes one command per
member, each with its own id, published on the member's own topic (so each is tracked).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from camfleet.controller import registry
from camfleet.controller.ingest.jobs import AfterCommit, Job
from camfleet.controller.metrics import Metrics
from camfleet.controller.storage.database import Database, Row, Tx
from camfleet.errors import UserError
from camfleet.proto import codec, topics
from camfleet.proto.v1 import command_pb2, config_pb2

log = logging.getLogger("camfleet.controller.commands")

FINAL = ("done", "failed", "expired", "rejected")
OPEN = ("queued", "sent", "accepted")
ACK_STATUS = {
    command_pb2.ACK_STATUS_ACCEPTED: "accepted",
    command_pb2.ACK_STATUS_DONE: "done",
    command_pb2.ACK_STATUS_FAILED: "failed",
    command_pb2.ACK_STATUS_EXPIRED: "expired",
    command_pb2.ACK_STATUS_REJECTED: "rejected",
}
ACTIONS = ("capture", "set_config", "reboot", "stay_awake", "reannounce")

Publish = Callable[..., None]


def new_command_id() -> str:
    return "c" + secrets.token_hex(8)


def build_action(action: str, params: dict[str, Any]) -> command_pb2.Command:
    """A Command carrying ``action`` with ``params`` (JSON field names of the action message)."""
    if action not in ACTIONS:
        raise UserError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    cmd = command_pb2.Command()
    target = getattr(cmd, action)
    try:
        json_format.ParseDict(params or {}, target)
    except json_format.ParseError as exc:
        raise UserError(f"bad parameters for {action}: {exc}") from None
    target.SetInParent()
    if action == "set_config":
        from camfleet.controller.desired import validate_config

        problems = validate_config(cmd.set_config.config)
        if problems:
            raise UserError("; ".join(problems))
    return cmd


#: Longest expiry a command may ask for (ten years): beyond it the value is a mistake.
MAX_EXPIRY_S = 10 * 365 * 86400


class Commands:
    def __init__(
        self,
        db: Database,
        publish: Publish,
        metrics: Metrics,
        root: str = topics.DEFAULT_ROOT,
        default_expiry_s: float = 24 * 3600,
        resend_after_s: float = 30.0,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.db = db
        self.publish = publish
        self.metrics = metrics
        self.root = root
        self.default_expiry_s = default_expiry_s
        self.resend_after_ms = int(resend_after_s * 1000)
        self.clock_ms = clock_ms
        self._flush_lock = threading.Lock()
        #: Called (from the writer thread) after a command changes status: (id, status).
        self.listeners: list[Callable[[str, str], None]] = []
        #: Set by the service: turns "sent" into a registry write (through the writer).
        self.mark_sent: Callable[[str], None] = self._mark_sent_direct

    # --- creation -----------------------------------------------------------------------------

    def create(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        device_id: str | None = None,
        group: str | None = None,
        expires_in_s: float | None = None,
    ) -> list[dict[str, Any]]:
        """Create a command for one device or every member of a group; publish it."""
        template = build_action(action, params or {})
        if (device_id is None) == (group is None):
            raise UserError("give exactly one of a device or a group")
        if expires_in_s is not None and not 0 < expires_in_s <= MAX_EXPIRY_S:
            # A negative value once read as "never expires" (and a device then ran a stale
            # reboot): only a positive number of seconds is an expiry; omit it for the default.
            raise UserError(
                f"expires_in_s must be a number of seconds in (0, {MAX_EXPIRY_S}], got "
                f"{expires_in_s!r}; omit it for the default ({self.default_expiry_s:g} s)"
            )
        now = self.clock_ms()
        expiry = self.default_expiry_s if expires_in_s is None else expires_in_s
        expires = now + int(expiry * 1000) if expiry > 0 else 0
        with self.db.transaction() as tx:
            if group is not None:
                topics.validate_group(group)
                targets = registry.members(tx, group)
                if not targets:
                    raise UserError(f"group {group!r} has no members")
            else:
                assert device_id is not None
                topics.validate_device_id(device_id)
                targets = [device_id]
            ids = [self.insert(tx, template, d, now, expires, group=group or "") for d in targets]
        self.metrics.inc("commands_created_total", len(ids), action=action)
        self.flush()
        with self.db.read() as tx:
            return [self.to_json(r) for i in ids if (r := self.get_row(tx, i)) is not None]

    def insert(
        self,
        tx: Tx,
        template: command_pb2.Command,
        device_id: str,
        now: int,
        expires_ms: int,
        group: str = "",
        command_id: str | None = None,
        schedule_id: str = "",
        slot_ms: int = 0,
    ) -> str:
        """Insert a queued command row (inside the caller's transaction); return its id."""
        cmd = command_pb2.Command()
        cmd.CopyFrom(template)
        cmd.id = command_id or new_command_id()
        cmd.issued_at_ms = now
        cmd.expires_at_ms = expires_ms
        cmd.group = group
        tx.execute(
            "INSERT INTO commands (id, device_id, group_name, action, payload, status, "
            "created_ms, expires_ms, updated_ms, schedule_id, slot_ms) "
            "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
            (
                cmd.id,
                device_id,
                group,
                cmd.WhichOneof("action"),
                codec.encode(cmd),
                now,
                expires_ms,
                now,
                schedule_id,
                slot_ms,
            ),
        )
        return cmd.id

    # --- publication (the outbox) -------------------------------------------------------------

    def flush(self) -> int:
        """Publish queued commands not yet confirmed by the broker; expire stale ones."""
        with self._flush_lock:
            now = self.clock_ms()
            self.expire_due(now)
            with self.db.transaction() as tx:
                rows = tx.query(
                    "SELECT id, device_id, payload, sent_ms FROM commands "
                    "WHERE status = 'queued' AND (sent_ms = 0 OR sent_ms < ?) "
                    "ORDER BY created_ms",
                    (now - self.resend_after_ms,),
                )
                claimed = []
                for row in rows:
                    # Compare-and-set: another controller flushing the same rows skips them.
                    if tx.execute(
                        "UPDATE commands SET sent_ms = ?, attempts = attempts + 1 "
                        "WHERE id = ? AND status = 'queued' AND sent_ms = ?",
                        (now, row["id"], row["sent_ms"]),
                    ):
                        claimed.append(row)
            for row in claimed:
                topic = topics.device_topic(row["device_id"], topics.Kind.CMD, self.root)
                cid = row["id"]
                self.publish(
                    topic, bytes(row["payload"]), qos=1, on_acked=lambda c=cid: self.mark_sent(c)
                )
            if claimed:
                self.metrics.inc("commands_published_total", len(claimed))
            return len(claimed)

    def resend_after_birth(self, device_ids: list[str]) -> int:
        """Publish again the commands these devices (just born) have not acknowledged at all.

        A birth proves the device is connected and subscribed now. A command marked ``sent``
        may still never reach it: the broker PUBACKs a QoS 1 publish even when no session
        exists for the device (it never connected, or its session expired) and drops it, and a
        broker that crashes loses what it queued since its last save. Re-queueing keeps the
        same id, and devices run an id only once, so the copy the persistent session delivers
        anyway is harmless. One transaction for the whole list (births come in bursts).
        """
        now = self.clock_ms()
        n = 0
        with self.db.transaction() as tx:
            for i in range(0, len(device_ids), 500):
                part = device_ids[i : i + 500]
                n += tx.execute(
                    "UPDATE commands SET status = 'queued', sent_ms = 0, updated_ms = ? "
                    "WHERE status = 'sent' AND (expires_ms = 0 OR expires_ms > ?) "
                    "AND device_id IN (" + ",".join("?" * len(part)) + ")",
                    (now, now, *part),
                )
        if n:
            self.metrics.inc("commands_resent_after_birth_total", n)
            self.flush()
        return n

    def _mark_sent_direct(self, command_id: str) -> None:
        with self.db.transaction() as tx:
            self.sent_in(tx, command_id)

    def sent_in(self, tx: Tx, command_id: str) -> None:
        tx.execute(
            "UPDATE commands SET status = 'sent', updated_ms = ? "
            "WHERE id = ? AND status = 'queued'",
            (self.clock_ms(), command_id),
        )

    def expire_due(self, now: int) -> int:
        with self.db.transaction() as tx:
            n = tx.execute(
                "UPDATE commands SET status = 'expired', updated_ms = ?, "
                "detail = 'expired before the device acknowledged it' "
                "WHERE status IN ('queued', 'sent') AND expires_ms > 0 AND expires_ms < ?",
                (now, now),
            )
        if n:
            self.metrics.inc("commands_expired_total", n)
        return n

    # --- acknowledgements (applied by the writer) ---------------------------------------------

    def apply_ack(self, tx: Tx, job: Job) -> AfterCommit | None:
        ack = job.message
        assert isinstance(ack, command_pb2.Ack)
        registry.touch(tx, job.device_id, job.received_ms)
        status = ACK_STATUS.get(ack.status, "unknown")
        row = tx.one(
            "SELECT status, status_source, device_id, capture_ids FROM commands WHERE id = ?",
            (ack.command_id,),
        )
        self.metrics.inc("acks_total", status=status)
        if row is None or row["device_id"] != job.device_id:
            self.metrics.inc("acks_unknown_command_total")
            return None
        if row["status_source"] == "device" and row["status"] in FINAL:
            return None  # a duplicate or late ack after the final one
        if status == "accepted" and row["status"] in FINAL:
            return None
        captures = sorted(set(json.loads(row["capture_ids"])) | set(ack.capture_ids))
        tx.execute(
            "UPDATE commands SET status = ?, status_source = 'device', detail = ?, "
            "updated_ms = ?, capture_ids = ? WHERE id = ?",
            (status, ack.detail, job.received_ms, json.dumps(captures), ack.command_id),
        )
        cid = ack.command_id

        def notify() -> None:
            for listener in self.listeners:
                listener(cid, status)

        return notify

    # --- queries ------------------------------------------------------------------------------

    def get_row(self, tx: Tx, command_id: str) -> Row | None:
        return tx.one("SELECT * FROM commands WHERE id = ?", (command_id,))

    def list_rows(
        self,
        tx: Tx,
        device_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Row]:
        where, params = [], []
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = "SELECT * FROM commands"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return tx.query(sql + " ORDER BY created_ms DESC LIMIT ?", [*params, limit])

    def to_json(self, row: Row) -> dict[str, Any]:
        cmd = command_pb2.Command()
        cmd.ParseFromString(bytes(row["payload"]))
        action = cmd.WhichOneof("action") or ""
        params = (
            json_format.MessageToDict(getattr(cmd, action), preserving_proto_field_name=True)
            if action
            else {}
        )
        status = row["status"]
        return {
            "id": row["id"],
            "device_id": row["device_id"],
            "group": row["group_name"] or None,
            "action": action,
            "params": params,
            "status": status,
            "pending": status in OPEN,
            "detail": row["detail"],
            "created_ms": row["created_ms"],
            "expires_ms": row["expires_ms"] or None,
            "updated_ms": row["updated_ms"],
            "attempts": row["attempts"],
            "schedule_id": row["schedule_id"] or None,
            "slot_ms": row["slot_ms"] or None,
            "capture_ids": json.loads(row["capture_ids"]),
        }


def _unknown_key(data: dict[str, Any], descriptor: Any, prefix: str = "") -> str | None:
    """The first key of ``data`` the message has no field for, as one line naming the valid
    keys in the spelling the docs and ``config set`` use (protobuf's own error is two lines
    in camelCase). Both spellings are accepted, as json_format does."""
    for key, value in data.items():
        field = descriptor.fields_by_name.get(key) or next(
            (f for f in descriptor.fields if f.json_name == key), None
        )
        if field is None:
            valid = ", ".join(f.name for f in descriptor.fields)
            return f"unknown key {prefix}{key}: use one of {valid}"
        if (
            field.message_type is not None
            and isinstance(value, dict)
            and not field.message_type.GetOptions().map_entry
        ):
            found = _unknown_key(value, field.message_type, f"{prefix}{field.name}.")
            if found:
                return found
    return None


def config_from_json(data: dict[str, Any]) -> config_pb2.DeviceConfig:
    cfg = config_pb2.DeviceConfig()
    unknown = _unknown_key(data, cfg.DESCRIPTOR) if isinstance(data, dict) else None
    if unknown:
        raise UserError(f"invalid config: {unknown}")
    try:
        json_format.ParseDict(data, cfg)
    except json_format.ParseError as exc:
        raise UserError(f"invalid config: {exc}") from None
    return cfg
