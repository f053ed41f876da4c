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
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
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
        #: Set by the service to the writer's ``call``: runs a function in the writer's next
        #: transaction. Without it (this class used alone) writes commit on their own.
        self.write: Callable[[Callable[[Tx], AfterCommit | None]], None] | None = None
        #: Set by the service: inside ``keys_batch(device_ids)`` the signing keys of those
        #: devices are read in one query (DeviceKeys.batch), not one per publish.
        self.keys_batch: Callable[[Iterable[str]], AbstractContextManager[None]] = lambda ids: (
            nullcontext()
        )
        self._sent_ids: list[str] = []
        self._sent_lock = threading.Lock()

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
            # One statement for all the rows, inserted already claimed for publication
            # (sent_ms, attempts 1): they are published just below, and if this process dies
            # first they are published again after resend_after_s like any claimed row.
            rows = [self._new_row(template, d, now, expires, group or "") for d in targets]
            tx.executemany(
                "INSERT INTO commands (id, device_id, group_name, action, payload, status, "
                "created_ms, expires_ms, updated_ms, sent_ms, attempts) "
                "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, 1)",
                [
                    (r["id"], r["device_id"], r["group_name"], action, r["payload"], now,
                     expires, now, now)
                    for r in rows
                ],
            )  # fmt: skip
        self.metrics.inc("commands_created_total", len(rows), action=action)
        self._publish_rows(rows)
        self.flush()
        # The answer is what was committed (no read-back of every row): status ``queued``.
        params = _params(template, action)
        return [self._json(r, action, params) for r in rows]

    def _new_row(
        self,
        template: command_pb2.Command,
        device_id: str,
        now: int,
        expires_ms: int,
        group: str,
        command_id: str | None = None,
        schedule_id: str = "",
        slot_ms: int = 0,
    ) -> Row:
        """A new command's row as ``create`` commits it (queued and claimed: attempts 1)."""
        cmd = command_pb2.Command()
        cmd.CopyFrom(template)
        cmd.id = command_id or new_command_id()
        cmd.issued_at_ms = now
        cmd.expires_at_ms = expires_ms
        cmd.group = group
        return {
            "id": cmd.id,
            "device_id": device_id,
            "group_name": group,
            "payload": codec.encode(cmd),
            "status": "queued",
            "detail": "",
            "created_ms": now,
            "expires_ms": expires_ms,
            "updated_ms": now,
            "attempts": 1,
            "schedule_id": schedule_id,
            "slot_ms": slot_ms,
            "capture_ids": "[]",
        }

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
        row = self._new_row(
            template, device_id, now, expires_ms, group, command_id, schedule_id, slot_ms
        )
        tx.execute(
            "INSERT INTO commands (id, device_id, group_name, action, payload, status, "
            "created_ms, expires_ms, updated_ms, schedule_id, slot_ms) "
            "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
            (
                row["id"],
                device_id,
                group,
                template.WhichOneof("action"),
                row["payload"],
                now,
                expires_ms,
                now,
                schedule_id,
                slot_ms,
            ),
        )
        return str(row["id"])

    # --- publication (the outbox) -------------------------------------------------------------

    def flush(self) -> int:
        """Publish queued commands not yet confirmed by the broker; expire stale ones."""
        with self._flush_lock:
            now = self.clock_ms()
            self.expire_due(now)
            with self.db.transaction() as tx:
                # Claimed in one statement: a row another controller claimed meanwhile no longer
                # matches (its sent_ms is recent), so each row is published by one of them.
                claimed = tx.query(
                    "UPDATE commands SET sent_ms = ?, attempts = attempts + 1 "
                    "WHERE status = 'queued' AND (sent_ms = 0 OR sent_ms < ?) "
                    "RETURNING id, device_id, payload, created_ms",
                    (now, now - self.resend_after_ms),
                )
            claimed.sort(key=lambda r: r["created_ms"])
            self._publish_rows(claimed)
            return len(claimed)

    def _publish_rows(self, rows: list[Row]) -> None:
        """Publish claimed rows; each is marked ``sent`` once the broker has it."""
        with self.keys_batch(r["device_id"] for r in rows):
            for row in rows:
                topic = topics.device_topic(row["device_id"], topics.Kind.CMD, self.root)
                cid = row["id"]
                self.publish(
                    topic, bytes(row["payload"]), qos=1, on_acked=lambda c=cid: self.mark_sent(c)
                )
        if rows:
            self.metrics.inc("commands_published_total", len(rows))

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

    def mark_sent(self, command_id: str) -> None:
        """The broker PUBACKed this command (called on the channel's confirmer thread).

        The marks are gathered and applied together, one statement in the writer's next
        transaction: a transaction per command cost a WAL fsync each and held the registry's
        write lock against the writer (a 5,000-device group capture spent seconds in them).
        A mark lost in a crash or a failed batch costs nothing: the row stays ``queued`` and is
        published again with the same id after ``command_resend_s`` (devices run an id once).
        """
        with self._sent_lock:
            self._sent_ids.append(command_id)
            first = len(self._sent_ids) == 1
        if not first:
            return  # the job that applies the first mark applies this one too
        if self.write is not None:
            self.write(self._apply_sent)
        else:
            with self.db.transaction() as tx:
                self._apply_sent(tx)

    def _apply_sent(self, tx: Tx) -> None:
        with self._sent_lock:
            ids, self._sent_ids = self._sent_ids, []
        now = self.clock_ms()
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            tx.execute(
                "UPDATE commands SET status = 'sent', updated_ms = ? "
                "WHERE status = 'queued' AND id IN (" + ",".join("?" * len(part)) + ")",
                (now, *part),
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
        return self._json(row, action, _params(cmd, action))

    def _json(self, row: Row, action: str, params: dict[str, Any]) -> dict[str, Any]:
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


def _params(cmd: command_pb2.Command, action: str) -> dict[str, Any]:
    if not action:
        return {}
    return json_format.MessageToDict(getattr(cmd, action), preserving_proto_field_name=True)


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
