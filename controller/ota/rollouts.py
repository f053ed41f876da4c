"""Staged firmware rollouts: who gets an offer when, and what counts as success.

A rollout is rows in the registry (``ota_rollouts``, one ``ota_rollout_devices`` row per target,
``ota_rollout_events`` for each device step), never process memory: a controller killed with -9
continues from them, and a device row leaves ``pending`` only through a compare-and-set, so a
device is offered an image at most once per attempt and never again once it finished.

Phases: the canary devices first (phase 0), then each ``--phases`` entry as a cumulative share of
the targets. The engine (``tick``, from the controller's periodic loop) offers the current phase's
pending devices (at most ``rate`` a minute), fails devices silent past ``device_timeout``, pauses
the rollout when failures exceed ``max_failure`` over at least ``min_sample`` finished devices,
and opens the next phase once every device of this one finished and enough of them succeeded
(or waits for ``resume`` with a manual gate).

Success: the device's ``ota`` event ``succeeded`` for this artifact (sent only after the new
image passed its health check and cancelled the rollback) while its birth reports the new
version. ``rolled_back`` (the old image is back) and ``failed`` are failures; so is silence past
the device timeout. A sleeping device's offer waits in its broker session: it is shown as
"waiting for wake" until its timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from camfleet.controller import registry
from camfleet.controller.commands import Commands
from camfleet.controller.ingest.jobs import AfterCommit, Job
from camfleet.controller.ota.artifacts import ArtifactStore, NotFound
from camfleet.controller.ota.delivery import BLOCK_SIZE
from camfleet.controller.storage.database import Database, Row, Tx
from camfleet.errors import UserError
from camfleet.proto import topics
from camfleet.proto.v1 import command_pb2, telemetry_pb2

ACTIVE = ("running", "gated", "paused")
IN_FLIGHT = ("offered", "downloading", "verifying", "rebooting")
FAILURES = ("failed", "rolled_back")
TERMINAL = ("succeeded", "skipped", *FAILURES)


@dataclass
class RolloutOptions:
    target: str = "all"
    only_version: str | None = None
    canary: int = 0
    phases: tuple[float, ...] = (1.0,)
    max_failure: float = 0.1
    min_sample: int = 3
    device_timeout_s: float = 7200.0
    retries: int = 0
    rate_per_min: float | None = None
    manual_gate: bool = False
    allow_downgrade: bool = False
    failure_baseline: int = 0  # failures accepted by a resume after an automatic pause


def parse_percent(text: str) -> float:
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UserError(f"not a percentage: {text!r}") from None
    if not 0 <= value <= 1:
        raise UserError(f"percentage out of range: {text!r}")
    return value


def parse_phases(text: str) -> tuple[float, ...]:
    phases = tuple(parse_percent(p) for p in text.split(",") if p.strip())
    if not phases or any(b <= a for a, b in itertools.pairwise(phases)):
        raise UserError(f"phases must be increasing percentages, e.g. 10%,50%,100%: {text!r}")
    if phases[-1] != 1.0:
        raise UserError("the last phase must be 100%")
    return phases


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not m:
        raise UserError(f"not a duration: {text!r} (e.g. 90s, 30m, 2h)")
    scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * scale


def parse_rate(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|min|h)\s*", text)
    if not m:
        raise UserError(f"not a rate: {text!r} (e.g. 20/min)")
    return float(m.group(1)) * {"s": 60, "min": 1, "h": 1 / 60}[m.group(2)]


def version_key(v: str) -> tuple[Any, ...]:
    """Order versions like 1.10.0 > 1.9.2; non-numeric parts compare as text after numbers."""
    parts = re.split(r"[.\-+]", v.lstrip("vV"))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


class Rollouts:
    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        commands: Commands,
        root: str = topics.DEFAULT_ROOT,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.commands = commands
        self.root = root
        self.clock_ms = clock_ms
        self._progress: dict[tuple[str, str], tuple[int, int]] = {}
        self._progress_lock = threading.Lock()
        self._tick_lock = threading.Lock()

    # --- creation and control -----------------------------------------------------------------

    def create(self, artifact_id: str, opts: RolloutOptions) -> dict[str, Any]:
        art = self.artifacts.get(artifact_id)
        version = art["version"]
        if opts.canary < 0 or opts.min_sample < 1 or opts.retries < 0:
            raise UserError("canary and retries must be >= 0, min-sample >= 1")
        if opts.device_timeout_s <= 0:
            raise UserError("device timeout must be positive")
        now = self.clock_ms()
        rid = "r" + secrets.token_hex(6)
        with self.db.transaction() as tx:
            targets = self._targets(tx, opts.target)
            if not targets:
                raise UserError(f"target {opts.target!r} has no devices")
            rows: list[tuple[str, str, str]] = []  # device, status, detail
            for device in targets:
                row = tx.one(
                    "SELECT firmware, platform, capabilities FROM devices WHERE device_id = ?",
                    (device,),
                )
                fw = row["firmware"] if row else ""
                status, detail = "pending", ""
                if row is None:
                    status, detail = "skipped", "unknown device"
                elif row["platform"] and device_family(row["platform"]) != art["platform"]:
                    status, detail = "skipped", _wrong_kind(row["platform"], art["kind"])
                elif (
                    art["kind"] == "edge-bundle"
                    and row["platform"]
                    and "self_update" not in json.loads(row["capabilities"] or "[]")
                ):
                    status, detail = "skipped", "self-update is off ([agent] update_public_key)"
                elif fw == version:
                    status, detail = "skipped", f"already on {version}"
                elif opts.only_version is not None and fw != opts.only_version:
                    status, detail = "skipped", f"runs {fw or 'unknown'}, not {opts.only_version}"
                elif fw and not opts.allow_downgrade and version_key(fw) > version_key(version):
                    status, detail = "skipped", f"runs newer {fw}: downgrade refused"
                rows.append((device, status, detail))
            eligible = [d for d, s, _ in rows if s == "pending"]
            phase_of = assign_phases(eligible, opts.canary, opts.phases)
            tx.execute(
                "INSERT INTO ota_rollouts (id, artifact_id, version, target, options, state, "
                "phase, reason, created_ms, updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    rid,
                    artifact_id,
                    version,
                    opts.target,
                    json.dumps(asdict(opts)),
                    "running" if eligible else "completed",
                    0,
                    "" if eligible else "no device needs this version",
                    now,
                    now,
                ),
            )
            for device, status, detail in rows:
                fw_row = tx.one("SELECT firmware FROM devices WHERE device_id = ?", (device,))
                tx.execute(
                    "INSERT INTO ota_rollout_devices (rollout_id, device_id, phase, status, "
                    "from_version, detail, updated_ms) VALUES (?,?,?,?,?,?,?)",
                    (
                        rid,
                        device,
                        phase_of.get(device, 0),
                        status,
                        fw_row["firmware"] if fw_row else "",
                        detail,
                        now,
                    ),
                )
                if status == "skipped":
                    self._event(tx, rid, device, "skipped", detail, now)
        self.tick()
        return self.status(rid)

    def _targets(self, tx: Tx, target: str) -> list[str]:
        kind, _, value = target.partition(":")
        if target == "all":
            return registry.members(tx, None)
        if kind == "group" and value:
            topics.validate_group(value)
            return registry.members(tx, value)
        if kind == "devices" and value:
            devices = sorted({d.strip() for d in value.split(",") if d.strip()})
            for d in devices:
                topics.validate_device_id(d)
            return devices
        raise UserError(f"bad target {target!r}: use group:G, devices:a,b or all")

    def set_state(self, rollout_id: str, action: str) -> dict[str, Any]:
        allowed = {
            "pause": (("running", "gated"), "paused", "paused by the operator"),
            "resume": (("paused", "gated"), "running", ""),
            "abort": (ACTIVE, "aborted", "aborted by the operator"),
        }
        if action not in allowed:
            raise UserError(f"unknown action {action!r}")
        from_states, to_state, reason = allowed[action]
        with self.db.transaction() as tx:
            row = self._get(tx, rollout_id)
            if row["state"] not in from_states:
                raise UserError(f"rollout {rollout_id} is {row['state']}: cannot {action}")
            opts = _options(row)
            phase = row["phase"]
            if action == "resume":
                opts.failure_baseline = self._counts(tx, rollout_id, None)["failed"]
                if row["state"] == "gated":
                    phase += 1  # the operator opens the next phase
            tx.execute(
                "UPDATE ota_rollouts SET state = ?, reason = ?, options = ?, phase = ?, "
                "updated_ms = ? WHERE id = ?",
                (to_state, reason, json.dumps(asdict(opts)), phase, self.clock_ms(), rollout_id),
            )
            step = {"pause": "paused", "resume": "resumed", "abort": "aborted"}[action]
            self._event(tx, rollout_id, "", step, "by the operator", self.clock_ms())
        self.tick()
        return self.status(rollout_id)

    # --- the engine ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Time-outs, gates, phase changes and offers of every running rollout."""
        with self._tick_lock:
            self._flush_progress()
            with self.db.read() as tx:
                ids = [
                    r["id"] for r in tx.query("SELECT id FROM ota_rollouts WHERE state = 'running'")
                ]
            offered = False
            for rid in ids:
                offered |= self._step(rid)
            if offered:
                self.commands.flush()

    def _step(self, rid: str) -> bool:
        now = self.clock_ms()
        offered = False
        with self.db.transaction() as tx:
            row = self._get(tx, rid)
            if row["state"] != "running":
                return False
            opts = _options(row)
            # silent past the device timeout
            for d in tx.query(
                "SELECT device_id FROM ota_rollout_devices WHERE rollout_id = ? AND status IN "
                "(?,?,?,?) AND deadline_ms > 0 AND deadline_ms < ?",
                (rid, *IN_FLIGHT, now),
            ):
                self._fail(
                    tx, rid, d["device_id"], "failed", "silent past its device timeout", now, opts
                )
            phase = row["phase"]
            last_phase = (
                tx.scalar(
                    "SELECT MAX(phase) FROM ota_rollout_devices "
                    "WHERE rollout_id = ? AND status != 'skipped'",
                    (rid,),
                )
                or 0
            )
            counts = self._counts(tx, rid, phase)
            failed = counts["failed"] - opts.failure_baseline
            finished = counts["succeeded"] + counts["failed"]
            if finished >= opts.min_sample and failed > opts.max_failure * finished:
                reason = (
                    f"paused: {failed} of {finished} finished devices failed "
                    f"({100 * failed / finished:.0f}% > max failure {100 * opts.max_failure:.0f}%)"
                )
                self._set(tx, rid, "paused", phase, reason, now)
                return False
            if counts["open"] == 0:
                if counts["failed"] - opts.failure_baseline > opts.max_failure * max(finished, 1):
                    # too few to judge with min_sample, but this phase cannot be called a success
                    self._set(
                        tx,
                        rid,
                        "paused",
                        phase,
                        f"paused: phase {phase} ended with {counts['failed']} failure(s)",
                        now,
                    )
                    return False
                if phase >= last_phase:
                    self._set(
                        tx, rid, "completed", phase, f"{counts['succeeded']} device(s) updated", now
                    )
                    return False
                if opts.manual_gate:
                    self._set(
                        tx,
                        rid,
                        "gated",
                        phase,
                        f"phase {phase} done: `ota rollout resume {rid}` opens phase {phase + 1}",
                        now,
                    )
                    return False
                phase += 1
                self._set(tx, rid, "running", phase, "", now)
            offered = self._offer_pending(tx, row, opts, phase, now)
        return offered

    def _offer_pending(self, tx: Tx, row: Row, opts: RolloutOptions, phase: int, now: int) -> bool:
        rid = row["id"]
        budget = 1_000_000
        if opts.rate_per_min:
            recent = tx.scalar(
                "SELECT COUNT(*) FROM ota_rollout_devices WHERE rollout_id = ? AND offered_ms > ?",
                (rid, now - 60_000),
            )
            budget = max(0, int(opts.rate_per_min) - int(recent or 0))
        pending = tx.query(
            "SELECT device_id FROM ota_rollout_devices WHERE rollout_id = ? AND status = 'pending' "
            "AND phase <= ? ORDER BY phase, device_id LIMIT ?",
            (rid, phase, budget),
        )
        if not pending:
            return False
        art = tx.one("SELECT * FROM ota_artifacts WHERE id = ?", (row["artifact_id"],))
        if art is None:  # removed under a paused rollout: nothing to offer
            self._set(tx, rid, "paused", phase, f"artifact {row['artifact_id']} is gone", now)
            return False
        for d in pending:
            device = d["device_id"]
            key = tx.scalar("SELECT hmac_key FROM ota_device_keys WHERE device_id = ?", (device,))
            if key is None:
                self._fail(
                    tx,
                    rid,
                    device,
                    "failed",
                    "no device key registered (camfleet ota key)",
                    now,
                    opts,
                )
                continue
            offer = make_offer(art, bytes(key), rid)
            deadline = now + int(opts.device_timeout_s * 1000)
            cid = self.commands.insert(
                tx, command_pb2.Command(ota_offer=offer), device, now, deadline
            )
            changed = tx.execute(
                "UPDATE ota_rollout_devices SET status = 'offered', command_id = ?, "
                "offered_ms = ?, "
                "deadline_ms = ?, attempts = attempts + 1, blocks_done = 0, blocks_total = ?, "
                "detail = '', updated_ms = ? WHERE rollout_id = ? AND device_id = ? "
                "AND status = 'pending'",
                (
                    cid,
                    now,
                    deadline,
                    (art["size"] + BLOCK_SIZE - 1) // BLOCK_SIZE,
                    now,
                    rid,
                    device,
                ),
            )
            if changed != 1:
                raise RuntimeError("rollout device row changed under us")  # rolls back the offer
            self._event(tx, rid, device, "offered", f"command {cid}", now)
        return True

    def _fail(
        self,
        tx: Tx,
        rid: str,
        device: str,
        status: str,
        detail: str,
        now: int,
        opts: RolloutOptions,
    ) -> None:
        attempts = tx.scalar(
            "SELECT attempts FROM ota_rollout_devices WHERE rollout_id = ? AND device_id = ?",
            (rid, device),
        )
        retry = status == "failed" and (attempts or 0) <= opts.retries and (attempts or 0) > 0
        tx.execute(
            "UPDATE ota_rollout_devices SET status = ?, detail = ?, deadline_ms = 0, "
            "updated_ms = ? "
            "WHERE rollout_id = ? AND device_id = ?",
            ("pending" if retry else status, detail, now, rid, device),
        )
        self._event(tx, rid, device, status.replace("_", " "), detail, now)
        if retry:
            self._event(tx, rid, device, "retrying", f"attempt {attempts + 1}", now)

    def _set(self, tx: Tx, rid: str, state: str, phase: int, reason: str, now: int) -> None:
        tx.execute(
            "UPDATE ota_rollouts SET state = ?, phase = ?, reason = ?, updated_ms = ? WHERE id = ?",
            (state, phase, reason, now, rid),
        )
        self._event(tx, rid, "", state if state != "running" else f"phase {phase}", reason, now)

    def _counts(self, tx: Tx, rid: str, phase: int | None) -> dict[str, int]:
        rows = tx.query(
            "SELECT status, COUNT(*) AS n FROM ota_rollout_devices WHERE rollout_id = ? "
            + ("AND phase <= ? " if phase is not None else "")
            + "GROUP BY status",
            (rid, phase) if phase is not None else (rid,),
        )
        by = {r["status"]: int(r["n"]) for r in rows}
        return {
            "succeeded": by.get("succeeded", 0),
            "failed": sum(by.get(s, 0) for s in FAILURES),
            "open": sum(by.get(s, 0) for s in ("pending", *IN_FLIGHT)),
        }

    def _event(self, tx: Tx, rid: str, device: str, step: str, detail: str, now: int) -> None:
        tx.execute(
            "INSERT INTO ota_rollout_events (rollout_id, device_id, ts_ms, step, detail) "
            "VALUES (?,?,?,?,?)",
            (rid, device, now, step, detail),
        )

    # --- what devices say (applied by the ingest writer, in its transaction) ------------------

    def _row_for(
        self, tx: Tx, device: str, artifact_id: str = "", command_id: str = ""
    ) -> Row | None:
        where = "rd.command_id = ?" if command_id else "r.artifact_id = ?"
        return tx.one(
            "SELECT rd.*, r.version, r.options, r.artifact_id FROM ota_rollout_devices rd "
            "JOIN ota_rollouts r ON r.id = rd.rollout_id WHERE rd.device_id = ? AND "
            + where
            + " AND rd.status IN (?,?,?,?) ORDER BY rd.offered_ms DESC LIMIT 1",
            (device, command_id or artifact_id, *IN_FLIGHT),
        )

    def apply_event(self, tx: Tx, job: Job) -> AfterCommit | None:
        ev = job.message
        assert isinstance(ev, telemetry_pb2.Event)
        if ev.type != "ota" or not ev.HasField("ota") or not ev.ota.artifact_id:
            return None
        row = self._row_for(tx, job.device_id, artifact_id=ev.ota.artifact_id)
        if row is None:
            return None
        rid, now, p = row["rollout_id"], job.received_ms, ev.ota
        opts = _options(row)
        step = {
            "accepted": "downloading",
            "downloading": "downloading",
            "verifying": "verifying",
            "rebooting": "rebooting",
        }.get(p.phase)
        if step is not None:
            tx.execute(
                "UPDATE ota_rollout_devices SET status = ?, blocks_done = MAX(blocks_done, ?), "
                "updated_ms = ? WHERE rollout_id = ? AND device_id = ?"
                if self.db.dialect == "sqlite"
                else "UPDATE ota_rollout_devices SET status = ?, "
                "blocks_done = GREATEST(blocks_done, ?), "
                "updated_ms = ? WHERE rollout_id = ? AND device_id = ?",
                (step, p.blocks_done, now, rid, job.device_id),
            )
            label = f"{step} {p.blocks_done}/{p.blocks_total}" if step == "downloading" else step
            self._event(tx, rid, job.device_id, label, ev.message, now)
        elif p.phase == "succeeded":
            fw = tx.scalar("SELECT firmware FROM devices WHERE device_id = ?", (job.device_id,))
            if fw == row["version"]:
                tx.execute(
                    "UPDATE ota_rollout_devices SET status = 'succeeded', detail = ?, "
                    "deadline_ms = 0, "
                    "updated_ms = ? WHERE rollout_id = ? AND device_id = ?",
                    (f"running {fw}, marked valid", now, rid, job.device_id),
                )
                self._event(tx, rid, job.device_id, "confirmed", f"running {fw}, marked valid", now)
            else:
                self._fail(
                    tx,
                    rid,
                    job.device_id,
                    "failed",
                    f"reports {fw}, not {row['version']}",
                    now,
                    opts,
                )
        elif p.phase == "rolled_back":
            self._fail(tx, rid, job.device_id, "rolled_back", p.error or ev.message, now, opts)
        elif p.phase == "failed":
            self._fail(tx, rid, job.device_id, "failed", p.error or ev.message, now, opts)
        return None

    def apply_ack(self, tx: Tx, job: Job) -> AfterCommit | None:
        ack = job.message
        assert isinstance(ack, command_pb2.Ack)
        if ack.status not in (command_pb2.ACK_STATUS_REJECTED, command_pb2.ACK_STATUS_EXPIRED):
            return None  # progress comes with the ota events
        row = self._row_for(tx, job.device_id, command_id=ack.command_id)
        if row is None:
            return None
        self._fail(
            tx,
            row["rollout_id"],
            job.device_id,
            "failed",
            f"offer {command_pb2.AckStatus.Name(ack.status).removeprefix('ACK_STATUS_').lower()}: "
            f"{ack.detail}",
            job.received_ms,
            _options(row),
        )
        return None

    def on_served(self, device: str, artifact_id: str, first: int, count: int, total: int) -> None:
        """Block server progress (worker thread): kept in memory, written on the next tick."""
        with self._progress_lock:
            done, _ = self._progress.get((device, artifact_id), (0, total))
            self._progress[(device, artifact_id)] = (max(done, min(first + count, total)), total)

    def _flush_progress(self) -> None:
        with self._progress_lock:
            items, self._progress = self._progress, {}
        if not items:
            return
        with self.db.transaction() as tx:
            for (device, artifact_id), (done, _total) in items.items():
                row = self._row_for(tx, device, artifact_id=artifact_id)
                if row is None or row["blocks_done"] >= done:
                    continue
                tx.execute(
                    "UPDATE ota_rollout_devices SET blocks_done = ?, status = CASE WHEN status = "
                    "'offered' THEN 'downloading' ELSE status END "
                    "WHERE rollout_id = ? AND device_id = ?",
                    (done, row["rollout_id"], device),
                )

    # --- queries ------------------------------------------------------------------------------

    def _get(self, tx: Tx, rid: str) -> Row:
        row = tx.one("SELECT * FROM ota_rollouts WHERE id = ?", (rid,))
        if row is None:
            raise NotFound(f"no rollout {rid!r}")
        return row

    def list(self) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            rows = tx.query("SELECT * FROM ota_rollouts ORDER BY created_ms DESC")
            return [self._summary(tx, r) for r in rows]

    def _summary(self, tx: Tx, r: Row) -> dict[str, Any]:
        by = {
            x["status"]: int(x["n"])
            for x in tx.query(
                "SELECT status, COUNT(*) AS n FROM ota_rollout_devices WHERE rollout_id = ? "
                "GROUP BY status",
                (r["id"],),
            )
        }
        return {
            "id": r["id"],
            "artifact_id": r["artifact_id"],
            "version": r["version"],
            "target": r["target"],
            "state": r["state"],
            "phase": r["phase"],
            "reason": r["reason"],
            "created_ms": r["created_ms"],
            "updated_ms": r["updated_ms"],
            "options": json.loads(r["options"]),
            "counts": by,
        }

    def status(
        self, rid: str, derive: Callable[[Row], str] | None = None, since_ms: int = 0
    ) -> dict[str, Any]:
        with self.db.read() as tx:
            r = self._get(tx, rid)
            out = self._summary(tx, r)
            devices = []
            for d in tx.query(
                "SELECT rd.*, dv.presence, dv.next_wake_ms, dv.last_seen_ms, dv.firmware "
                "FROM ota_rollout_devices rd LEFT JOIN devices dv ON dv.device_id = rd.device_id "
                "WHERE rd.rollout_id = ? ORDER BY rd.phase, rd.device_id",
                (rid,),
            ):
                shown = d["status"]
                if (
                    shown == "offered"
                    and derive is not None
                    and d["presence"] is not None
                    and derive(d) in ("asleep", "overdue", "offline")
                ):
                    shown = "waiting for wake"
                devices.append(
                    {
                        "device_id": d["device_id"],
                        "phase": d["phase"],
                        "status": d["status"],
                        "shown": shown,
                        "from_version": d["from_version"],
                        "firmware": d["firmware"],
                        "attempts": d["attempts"],
                        "blocks_done": d["blocks_done"],
                        "blocks_total": d["blocks_total"],
                        "detail": d["detail"],
                        "deadline_ms": d["deadline_ms"] or None,
                        "updated_ms": d["updated_ms"],
                    }
                )
            events = tx.query(
                "SELECT device_id, ts_ms, step, detail FROM ota_rollout_events "
                "WHERE rollout_id = ? AND ts_ms >= ? ORDER BY ts_ms, step LIMIT 5000",
                (rid, since_ms),
            )
        out["devices"] = devices
        out["events"] = events
        return out


def device_family(platform: str) -> str:
    """The artifact platform a device takes: ESP32 nodes report ``esp32``; edge agents report
    their camera backend's platform (picamera2, maix, opencv, synthetic, ...) and take ``linux``
    bundles."""
    return "esp32" if platform == "esp32" else "linux"


def _wrong_kind(platform: str, kind: str) -> str:
    if device_family(platform) == "esp32":
        return f"ESP32 node: {kind} artifacts are never offered to it"
    return f"edge agent (platform {platform}): {kind} artifacts are never offered to it"


def make_offer(art: Row, device_key: bytes, rollout_id: str) -> command_pb2.OtaOffer:
    """The offer of an artifact to one device. ESP32 images: ``signature`` is HMAC-SHA256(device
    key, sha256) (their release signature is inside the image). Edge bundles: ``signature`` is
    the release key's Ed25519 signature stored at upload, ``device_hmac`` the per-device HMAC."""
    sha = bytes.fromhex(art["sha256"])
    device_hmac = hmac.new(device_key, sha, hashlib.sha256).digest()
    offer = command_pb2.OtaOffer(
        artifact_id=art["id"],
        version=art["version"],
        size=art["size"],
        sha256=sha,
        block_size=BLOCK_SIZE,
        platform=art["platform"],
        rollout_id=rollout_id,
    )
    if art["kind"] == "edge-bundle":
        offer.scheme = command_pb2.SIGNATURE_SCHEME_ED25519
        offer.signature = bytes(art["signature"])
        offer.device_hmac = device_hmac
    else:
        offer.scheme = command_pb2.SIGNATURE_SCHEME_HMAC_SHA256
        offer.signature = device_hmac
    return offer


def assign_phases(devices: list[str], canary: int, phases: tuple[float, ...]) -> dict[str, int]:
    """device -> phase: canary devices in phase 0, then cumulative shares of all targets."""
    out: dict[str, int] = {}
    n = len(devices)
    start = 0
    offset = 0
    if canary > 0 and n:
        for d in devices[:canary]:
            out[d] = 0
        start = min(canary, n)
        offset = 1
    for k, share in enumerate(phases):
        upto = max(start, min(n, math.ceil(share * n)))
        for d in devices[start:upto]:
            out[d] = k + offset
        start = upto
    return out


def _options(row: Row) -> RolloutOptions:
    data = json.loads(row["options"])
    data["phases"] = tuple(data.get("phases", (1.0,)))
    return RolloutOptions(**data)
