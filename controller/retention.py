"""Retention: frames per device (or per group, or a default) by age, count and bytes, plus a disk
budget for the whole store; and finished commands by age and count per device.

Works from the index only: a frame is a candidate only once its index row exists, so a file
being written (not yet indexed) is never deleted. Rows are deleted and committed first, then the
files: a crash in between leaves an orphan file, never an index row pointing at nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from camfleet.controller import registry
from camfleet.controller.commands import FINAL
from camfleet.controller.config import ControllerConfig, RetentionPolicy
from camfleet.controller.frames.store import FrameStore
from camfleet.controller.metrics import Metrics
from camfleet.controller.storage.database import Database, Row, Tx

log = logging.getLogger("camfleet.controller.retention")

Victim = tuple[str, int, int, str]  # device, session, seq, store key


class Retention:
    def __init__(
        self,
        db: Database,
        store: FrameStore,
        config: ControllerConfig,
        metrics: Metrics,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.db = db
        self.store = store
        self.config = config
        self.metrics = metrics
        self.clock_ms = clock_ms

    def policy_for(self, tx: Tx, device_id: str) -> RetentionPolicy:
        """The device's own policy, else its first group (alphabetical) with one, else default."""
        if device_id in self.config.retention_devices:
            return self.config.retention_devices[device_id]
        for group in registry.groups_of(tx, device_id):
            if group in self.config.retention_groups:
                return self.config.retention_groups[group]
        return self.config.retention_default

    def run(self) -> dict[str, int]:
        """Delete what the policies say; return counts by reason."""
        now = self.clock_ms()
        # Keyed by store key: unique per stored frame, where (device, session, seq) is not (a
        # device's incarnations, conflicts).
        victims: dict[str, tuple[int, str]] = {}  # store key -> (size, reason)
        with self.db.read() as tx:
            devices = [r["device_id"] for r in tx.query("SELECT DISTINCT device_id FROM frames")]
            for device_id in devices:
                policy = self.policy_for(tx, device_id)
                for reason, rows in self._device_victims(tx, device_id, policy, now):
                    for r in rows:
                        victims.setdefault(r["store_key"], (r["size"], reason))
            budget = self.config.disk_budget_bytes
            if budget:
                total = tx.scalar("SELECT COALESCE(SUM(size), 0) FROM frames") or 0
                excess = total - sum(size for size, _ in victims.values()) - budget
                if excess > 0:
                    for r in tx.query(
                        "SELECT store_key, size FROM frames "
                        "ORDER BY captured_at_ms, device_id, session, seq, stored_ms"
                    ):
                        if excess <= 0:
                            break
                        if r["store_key"] in victims:
                            continue
                        victims[r["store_key"]] = (r["size"], "disk_budget")
                        excess -= r["size"]
        if not victims:
            return {}
        with self.db.transaction() as tx:
            tx.executemany("DELETE FROM frames WHERE store_key = ?", [(k,) for k in victims])
        counts: dict[str, int] = {}
        for store_key, (_size, reason) in victims.items():
            self.store.delete(store_key)
            counts[reason] = counts.get(reason, 0) + 1
        for reason, n in counts.items():
            self.metrics.inc("retention_deleted_total", n, reason=reason)
        log.info("retention deleted %s", counts)
        return counts

    def _device_victims(
        self, tx: Tx, device_id: str, policy: RetentionPolicy, now: int
    ) -> list[tuple[str, list[Row]]]:
        out = []
        cols = "session, seq, store_key, size"
        if policy.max_age_days is not None:
            cutoff = now - int(policy.max_age_days * 86400 * 1000)
            out.append(
                (
                    "age",
                    tx.query(
                        f"SELECT {cols} FROM frames WHERE device_id = ? AND captured_at_ms < ?",
                        (device_id, cutoff),
                    ),
                )
            )
        if policy.max_count is not None or policy.max_bytes is not None:
            newest_first = tx.query(
                f"SELECT {cols} FROM frames WHERE device_id = ? "
                "ORDER BY captured_at_ms DESC, session DESC, seq DESC",
                (device_id,),
            )
            if policy.max_count is not None:
                out.append(("count", newest_first[policy.max_count :]))
            if policy.max_bytes is not None:
                kept, over = 0, []
                for r in newest_first:
                    kept += r["size"]
                    if kept > policy.max_bytes:
                        over.append(r)
                out.append(("bytes", over))
        return out

    def trim_commands(self) -> int:
        """Delete finished commands older than ``command_history_days`` or beyond the newest
        ``command_history`` of their device; return how many went.

        A command still pending (queued, sent, accepted) is never deleted, whatever its age:
        its row is the outbox the controller publishes from and the target of the device's ack.
        """
        days, keep = self.config.command_history_days, self.config.command_history
        final = ", ".join(f"'{s}'" for s in FINAL)  # constants of commands.py, not user input
        deleted = 0
        with self.db.transaction() as tx:
            if days > 0:
                cutoff = self.clock_ms() - int(days * 86400 * 1000)
                deleted += tx.execute(
                    f"DELETE FROM commands WHERE created_ms < ? AND status IN ({final})",
                    (cutoff,),
                )
            if keep > 0:
                for row in tx.query("SELECT DISTINCT device_id FROM commands"):
                    device_id = row["device_id"]
                    # The newest ``keep`` rows of the device stay, finished or not (ties on
                    # created_ms broken by id); the walk follows the (device_id, created_ms)
                    # index, so it costs ``keep`` steps however long the history.
                    edge = tx.one(
                        "SELECT created_ms, id FROM commands WHERE device_id = ? "
                        "ORDER BY created_ms DESC, id DESC LIMIT 1 OFFSET ?",
                        (device_id, keep - 1),
                    )
                    if edge is not None:
                        deleted += tx.execute(
                            "DELETE FROM commands WHERE device_id = ? AND (created_ms < ? "
                            f"OR (created_ms = ? AND id < ?)) AND status IN ({final})",
                            (device_id, edge["created_ms"], edge["created_ms"], edge["id"]),
                        )
        if deleted:
            self.metrics.inc("commands_deleted_total", deleted)
            log.info("retention deleted %d finished commands", deleted)
        return deleted
