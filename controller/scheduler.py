"""Capture schedules (cron via croniter, interval, one-shot) for a device, a group or all.

Always-on devices get capture commands on time. Sleeping nodes (capability ``deep_sleep``, or
last seen going to sleep) cannot hear a command on time, so their schedules are compiled into
their desired config (CaptureSchedule) and they wake on their own timer.

Exactly once per slot, across restarts and several controllers: a slot is claimed with a
compare-and-set on ``next_slot_ms`` in the SAME transaction that inserts its commands (with ids
derived from schedule, slot and device), so a slot is either fully fired or not at all, never
twice. Missed-slot policy (a controller that was down, or a slow tick): of the slots that came
due since the last tick, only the most recent fires, and only if it is at most
``misfire_grace_s`` old; the others are counted as missed. The next slot is always in the future.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from croniter import croniter

from camfleet.controller import registry
from camfleet.controller.commands import Commands, build_action
from camfleet.controller.desired import DesiredState
from camfleet.controller.metrics import Metrics
from camfleet.controller.storage.database import Database, Row, Tx
from camfleet.errors import UserError
from camfleet.proto import topics
from camfleet.proto.v1 import config_pb2

log = logging.getLogger("camfleet.controller.scheduler")

TARGET_KINDS = ("device", "group", "all")
KINDS = ("cron", "interval", "once")
_MAX_SLOTS_WALKED = 100_000


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def next_slot(kind: str, spec: str, start_ms: int, after_ms: int) -> int | None:
    """The first slot strictly after ``after_ms`` (None: the schedule has no more slots)."""
    if kind == "once":
        return start_ms if start_ms > after_ms else None
    if kind == "interval":
        step = int(float(spec) * 1000)
        if after_ms < start_ms:
            return start_ms
        return start_ms + ((after_ms - start_ms) // step + 1) * step
    base = max(after_ms, start_ms - 1)
    return int(croniter(spec, _utc(base)).get_next(float) * 1000)


def parse_when(text: str) -> int:
    """``now``, Unix ms, or an ISO 8601 time (UTC when no zone is given) -> Unix ms."""
    text = str(text).strip()
    if text == "now":
        return int(time.time() * 1000)
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"invalid time {text!r}: use ISO 8601 or Unix ms") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def validate(kind: str, spec: str, target_kind: str, target: str) -> None:
    if kind not in KINDS:
        raise UserError(f"schedule kind must be one of {', '.join(KINDS)}")
    if target_kind not in TARGET_KINDS:
        raise UserError(f"target must be one of {', '.join(TARGET_KINDS)}")
    if target_kind == "device":
        topics.validate_device_id(target)
    elif target_kind == "group":
        topics.validate_group(target)
    if kind == "cron" and not croniter.is_valid(spec):
        raise UserError(f"invalid cron expression {spec!r} (5 fields, UTC)")
    if kind == "interval":
        try:
            ok = float(spec) >= 1
        except ValueError:
            ok = False
        if not ok:
            raise UserError(f"interval must be a number of seconds >= 1, got {spec!r}")


def compile_cron(spec: str) -> tuple[list[int], str | None]:
    """Daily times (s after UTC midnight) when the cron is daily, else (., cron) for Linux."""
    fields = spec.split()
    if len(fields) == 5 and fields[2:] == ["*", "*", "*"]:
        try:
            minutes = [int(m) for m in fields[0].split(",")]
            hours = [int(h) for h in fields[1].split(",")]
        except ValueError:
            return [], spec
        return sorted(h * 3600 + m * 60 for h in hours for m in minutes), None
    return [], spec


class Scheduler:
    def __init__(
        self,
        db: Database,
        commands: Commands,
        desired: DesiredState,
        metrics: Metrics,
        misfire_grace_s: float = 300.0,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.db = db
        self.commands = commands
        self.desired = desired
        self.metrics = metrics
        self.misfire_grace_ms = int(misfire_grace_s * 1000)
        self.clock_ms = clock_ms

    # --- CRUD ---------------------------------------------------------------------------------

    def create(
        self,
        target_kind: str,
        target: str,
        kind: str,
        spec: str,
        capture_count: int = 1,
        start: str | int | None = None,
    ) -> dict[str, Any]:
        target = target if target_kind != "all" else ""
        validate(kind, spec, target_kind, target)
        if capture_count < 1:
            raise UserError("capture count must be >= 1")
        now = self.clock_ms()
        start_ms = parse_when(str(start)) if start is not None else now
        if kind == "once" and start is None:
            start_ms = parse_when(spec)
        if kind == "once":
            # A one-shot a moment in the past (the caller's "now", a request that took a while)
            # fires at the next tick, like a late slot; one older than the grace would never
            # fire, so it is refused instead of stored silently.
            if start_ms < now - self.misfire_grace_ms:
                raise UserError(
                    f"the one-shot time {_utc(start_ms).isoformat()} is in the past "
                    f"(more than misfire_grace_s = {self.misfire_grace_ms // 1000} s ago)"
                )
            first: int | None = start_ms
        else:
            first = next_slot(kind, spec, start_ms, now - 1)
        sid = "s" + secrets.token_hex(4)
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO schedules (id, target_kind, target, kind, spec, capture_count, "
                "enabled, created_ms, start_ms, next_slot_ms) VALUES (?,?,?,?,?,?,1,?,?,?)",
                (sid, target_kind, target, kind, spec, capture_count, now, start_ms, first),
            )
        self._refresh_sleepers(target_kind, target)
        return self.get(sid)

    def get(self, schedule_id: str) -> dict[str, Any]:
        with self.db.read() as tx:
            row = tx.one("SELECT * FROM schedules WHERE id = ?", (schedule_id,))
        if row is None:
            raise KeyError(schedule_id)
        return self.to_json(row)

    def list_all(self) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            return [self.to_json(r) for r in tx.query("SELECT * FROM schedules ORDER BY id")]

    def delete(self, schedule_id: str) -> bool:
        with self.db.transaction() as tx:
            row = tx.one("SELECT * FROM schedules WHERE id = ?", (schedule_id,))
            if row is None:
                return False
            tx.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,))
        self._refresh_sleepers(row["target_kind"], row["target"])
        return True

    def set_enabled(self, schedule_id: str, enabled: bool) -> dict[str, Any]:
        with self.db.transaction() as tx:
            row = tx.one("SELECT * FROM schedules WHERE id = ?", (schedule_id,))
            if row is None:
                raise KeyError(schedule_id)
            # Never re-open a slot that already fired: a controller whose clock is behind the one
            # that fired it would otherwise hand the same slot (and command ids) out again.
            after = max(self.clock_ms(), row["last_slot_ms"] or 0)
            nxt = next_slot(row["kind"], row["spec"], row["start_ms"], after)
            tx.execute(
                "UPDATE schedules SET enabled = ?, next_slot_ms = ? WHERE id = ?",
                (int(enabled), nxt, schedule_id),
            )
        self._refresh_sleepers(row["target_kind"], row["target"])
        return self.get(schedule_id)

    @staticmethod
    def to_json(row: Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "target_kind": row["target_kind"],
            "target": row["target"] or None,
            "kind": row["kind"],
            "spec": row["spec"],
            "capture_count": row["capture_count"],
            "enabled": bool(row["enabled"]),
            "created_ms": row["created_ms"],
            "start_ms": row["start_ms"],
            "last_slot_ms": row["last_slot_ms"] or None,
            "next_slot_ms": row["next_slot_ms"],
            "fired": row["fired"],
            "missed": row["missed"],
        }

    def _targets(self, tx: Tx, target_kind: str, target: str) -> list[str]:
        if target_kind == "device":
            return [target]
        return registry.members(tx, target if target_kind == "group" else None)

    def _refresh_sleepers(self, target_kind: str, target: str) -> None:
        with self.db.read() as tx:
            devices = self._targets(tx, target_kind, target)
        self.desired.refresh(devices)

    # --- firing -------------------------------------------------------------------------------

    def tick(self) -> int:
        """Fire every schedule whose next slot has come; return the number of slots fired."""
        now = self.clock_ms()
        with self.db.read() as tx:
            due = tx.query(
                "SELECT * FROM schedules WHERE enabled = 1 AND next_slot_ms IS NOT NULL "
                "AND next_slot_ms <= ?",
                (now,),
            )
        fired = sum(self._fire(row, now) for row in due)
        if fired:
            self.commands.flush()
        return fired

    def _fire(self, row: Row, now: int) -> int:
        kind, spec, start = row["kind"], row["spec"], row["start_ms"]
        slot = row["next_slot_ms"]
        due = [slot]
        while len(due) < _MAX_SLOTS_WALKED:
            nxt = next_slot(kind, spec, start, due[-1])
            if nxt is None or nxt > now:
                break
            due.append(nxt)
        latest = due[-1]
        fire = now - latest <= self.misfire_grace_ms
        missed = len(due) - (1 if fire else 0)
        following = next_slot(kind, spec, start, max(now, latest))
        with self.db.transaction() as tx:
            claimed = tx.execute(
                "UPDATE schedules SET next_slot_ms = ?, last_slot_ms = ?, fired = fired + ?, "
                "missed = missed + ? WHERE id = ? AND next_slot_ms = ?",
                (following, latest, int(fire), missed, row["id"], slot),
            )
            if not claimed:
                return 0  # another controller (or tick) took this slot
            if fire:
                self._issue(tx, row, latest, now)
        if missed:
            self.metrics.inc("schedule_missed_total", missed)
            log.info(
                "schedule %s: %d slot(s) missed (policy: latest within grace)", row["id"], missed
            )
        if fire:
            self.metrics.inc("schedule_fired_total")
        return int(fire)

    def _issue(self, tx: Tx, row: Row, slot: int, now: int) -> None:
        template = build_action(
            "capture",
            {
                "count": row["capture_count"],
                "metadata": {"schedule_id": row["id"], "slot_ms": str(slot)},
            },
        )
        expires = slot + max(self.misfire_grace_ms, 60_000)
        for device_id in self._targets(tx, row["target_kind"], row["target"]):
            device = tx.one("SELECT * FROM devices WHERE device_id = ?", (device_id,))
            sleeper = device is not None and registry.is_sleeper(device)
            if sleeper and row["kind"] != "once":
                continue  # it wakes on its own (compiled schedule)
            self.commands.insert(
                tx,
                template,
                device_id,
                now,
                # A one-shot cannot be compiled into a sleeper's config: its command waits in
                # the node's session until the next wake, for up to a day.
                slot + 86_400_000 if sleeper else expires,
                group=row["target"] if row["target_kind"] == "group" else "",
                command_id=f"{row['id']}-{slot}-{device_id}",
                schedule_id=row["id"],
                slot_ms=slot,
            )

    # --- compiled schedules for sleeping nodes ------------------------------------------------

    def schedule_layer(self, tx: Tx, device_id: str) -> config_pb2.DeviceConfig | None:
        device = tx.one("SELECT * FROM devices WHERE device_id = ?", (device_id,))
        if device is None or not registry.is_sleeper(device):
            return None
        groups = registry.groups_of(tx, device_id)
        rows = [
            r
            for r in tx.query("SELECT * FROM schedules WHERE enabled = 1 ORDER BY id")
            if r["target_kind"] == "all"
            or (r["target_kind"] == "device" and r["target"] == device_id)
            or (r["target_kind"] == "group" and r["target"] in groups)
        ]
        if not rows:
            return None
        sched = config_pb2.CaptureSchedule()
        daily: set[int] = set()
        for r in rows:
            if r["kind"] == "interval":
                interval = max(1, int(float(r["spec"])))
                if not sched.HasField("interval_s") or interval < sched.interval_s:
                    sched.interval_s = interval
            elif r["kind"] == "cron":
                times, cron = compile_cron(r["spec"])
                daily.update(times)
                if cron is not None:
                    sched.cron = cron
            sched.burst_count = max(sched.burst_count, r["capture_count"])
        sched.daily_times_s.extend(sorted(daily))
        cfg = config_pb2.DeviceConfig()
        cfg.schedule.CopyFrom(sched)
        return cfg
