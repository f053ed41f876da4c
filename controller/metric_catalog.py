"""Every counter the controller exports: its HELP text and the label values it starts with.

A counter that appears only after its first increment shows "no data" in Prometheus, and an
alert on ``rate(x[5m]) > 0`` or ``increase(...)`` then cannot tell "never happened" from "not
scraped". So every counter below exists at 0 from start, with one series per label value that
can occur (labels whose values are small closed sets: reasons, kinds, actions, statuses).
"""

from __future__ import annotations

import itertools

from camfleet.controller.commands import ACK_STATUS, ACTIONS
from camfleet.controller.metrics import Metrics
from camfleet.proto.errors import Reason
from camfleet.proto.topics import DEVICE_TO_CONTROLLER, Kind

_DEVICE_KINDS = sorted(k.value for k in DEVICE_TO_CONTROLLER)
#: Kinds a message can be refused as: what devices publish, what they must not publish, and
#: ``unknown`` for topics outside the scheme.
_ANY_KIND = sorted({k.value for k in Kind} | {"unknown"})
_WRITER_STAGES = ("writer_dedup", "writer_files", "writer_index", "writer_receipts_and_acks")

#: name -> (HELP text, {label: possible values}); no labels -> one series.
COUNTERS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "messages_total": (
        "Well-formed device messages received, by topic kind.",
        {"kind": _DEVICE_KINDS},
    ),
    "malformed_total": (
        "Messages refused (counted, logged once, acknowledged), by reason and topic kind.",
        {"reason": [r.value for r in Reason] + ["internal"], "kind": _ANY_KIND},
    ),
    "unhandled_total": (
        "Well-formed messages on topics the controller does not ingest (controller presence, "
        "kinds it does not handle), by kind.",
        {"kind": ["controller_state", *_DEVICE_KINDS]},
    ),
    "unknown_fields_total": (
        "Device messages carrying protobuf fields this controller does not know (newer "
        "firmware), by kind.",
        {"kind": _DEVICE_KINDS},
    ),
    "frames_stored_total": ("Frames durably stored (new, not duplicates).", {}),
    "frames_duplicate_total": ("Redelivered or replayed frames that were already stored.", {}),
    "frames_conflict_total": (
        "Frames whose identity was already stored with another SHA-256: kept and flagged.",
        {},
    ),
    "frames_refused_total": (
        "Frames acknowledged without storing and without a receipt (the device sends them "
        "again), by reason.",
        {"reason": ["disk_low", "store_error"]},
    ),
    "frame_bytes_stored_total": ("Image bytes durably stored.", {}),
    "frames_reassembled_total": ("Chunked frames reassembled and verified.", {}),
    "chunked_frames_expired_total": (
        "Chunked frames given up because their chunks stopped coming (chunk_timeout_s).",
        {},
    ),
    "chunked_frames_evicted_total": (
        "Incomplete chunked frames given up to make room, by limit hit (per device, memory).",
        {"reason": ["device", "memory"]},
    ),
    "receipts_sent_total": ("Receipt messages published to devices.", {}),
    "states_total": (
        "Device state messages (births, wills, going to sleep), by outcome: new device, "
        "applied, or stale (older than what the registry holds).",
        {"outcome": ["new", "applied", "stale"]},
    ),
    "controller_presence_reasserted_total": (
        "Times the controller presence topic said other than ONLINE while this controller ran.",
        {},
    ),
    "commands_created_total": ("Commands created, by action.", {"action": list(ACTIONS)}),
    "commands_published_total": ("Command messages published to devices.", {}),
    "commands_resent_after_birth_total": (
        "Unacknowledged commands published again when their device was born again.",
        {},
    ),
    "commands_expired_total": ("Commands the controller marked expired.", {}),
    "acks_total": (
        "Command acknowledgements received, by status.",
        {"status": sorted(ACK_STATUS.values())},
    ),
    "acks_unknown_command_total": ("Acknowledgements of command ids the registry lacks.", {}),
    "schedule_fired_total": ("Schedule slots fired.", {}),
    "schedule_missed_total": ("Schedule slots skipped under the missed-slot policy.", {}),
    "retention_deleted_total": (
        "Frames deleted by retention, by the rule that deleted them.",
        {"reason": ["age", "count", "bytes", "disk_budget"]},
    ),
    "commands_deleted_total": ("Finished commands deleted by retention.", {}),
    "writer_batches_total": ("Batches the writer committed.", {}),
    "writer_jobs_total": ("Jobs (messages) the writer committed.", {}),
    "writer_batch_errors_total": (
        "Batches that failed as a whole (then retried job by job).",
        {},
    ),
    "writer_job_errors_total": (
        "Jobs the writer could not apply, by kind.",
        {"kind": _DEVICE_KINDS},
    ),
    "ota_blocks_served_total": ("OTA firmware blocks published to devices.", {}),
    "ota_requests_dropped_total": (
        "OTA block requests not answered, by reason (the device asks again after its timer).",
        {"reason": ["queue_full", "unknown_artifact", "max_transfers"]},
    ),
    "ota_artifact_mismatch_total": (
        "Times an OTA artifact's file no longer matched its recorded SHA-256.",
        {},
    ),
    "stage_seconds_total": (
        "Wall-clock seconds spent in each writer stage.",
        {"stage": list(_WRITER_STAGES)},
    ),
    "stage_cpu_seconds_total": (
        "Writer-thread CPU seconds spent in each writer stage.",
        {"stage": list(_WRITER_STAGES)},
    ),
}


def declare_counters(metrics: Metrics) -> None:
    """Give every counter its HELP text and its zero series."""
    for name, (help_text, labels) in COUNTERS.items():
        names = list(labels)
        series = [
            dict(zip(names, values, strict=True)) for values in itertools.product(*labels.values())
        ]
        metrics.declare(name, help_text, series)
