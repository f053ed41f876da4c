"""The fleet registry: devices (presence ordered by session, as Sparkplug's bdSeq), groups, tags,
telemetry with bounded history, and events. Functions take an open transaction so the ingest
writer can apply a whole batch in one commit.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from camfleet.controller.frames.store import incarnation_tag
from camfleet.controller.storage.database import Row, Tx
from camfleet.proto import topics
from camfleet.proto.v1 import common_pb2, state_pb2, telemetry_pb2

PRESENCE_NAMES = {
    state_pb2.PRESENCE_ONLINE: "online",
    state_pb2.PRESENCE_OFFLINE: "offline",
    state_pb2.PRESENCE_ASLEEP: "asleep",
}
#: Presence after `camfleet device rm` (:func:`revoked`); the derived state is offline.
REVOKED = "revoked"
#: Derived device states shown by the API.
DERIVED_STATES = ("online", "asleep", "overdue", "offline", "unknown", "enrolled")


def wake_cause_name(value: int) -> str:
    try:
        name = common_pb2.WakeCause.Name(value)  # type: ignore[arg-type]
        return name.removeprefix("WAKE_CAUSE_").lower()
    except ValueError:
        return str(value)


def touch(tx: Tx, device_id: str, now_ms: int) -> bool:
    """Record that the device was heard from; True when it is new to the registry (never heard
    from: no row, or only the row of its enrolment, see :func:`enrol`)."""
    # One statement for a device heard from before (every message of every device comes here):
    # the UPDATE matches its row whether or not last_seen moves. 0 rows: a new device, or an
    # enrolled one (first_seen_ms 0 until it is first heard from).
    if tx.execute(
        "UPDATE devices SET last_seen_ms = CASE WHEN last_seen_ms < ? THEN ? ELSE last_seen_ms "
        "END WHERE device_id = ? AND first_seen_ms <> 0",
        (now_ms, now_ms, device_id),
    ):
        return False
    if tx.execute(
        "UPDATE devices SET first_seen_ms = ?, last_seen_ms = ? "
        "WHERE device_id = ? AND first_seen_ms = 0",
        (now_ms, now_ms, device_id),
    ):
        return True  # its first message since `camfleet device add`
    tx.execute(
        "INSERT INTO devices (device_id, first_seen_ms, last_seen_ms) VALUES (?, ?, ?) "
        "ON CONFLICT (device_id) DO NOTHING",
        (device_id, now_ms, now_ms),
    )
    return True


def enrol(tx: Tx, device_id: str, groups: tuple[str, ...], board: str) -> None:
    """The row of a device enrolled (``camfleet device add``) but never heard from: first and
    last seen 0, state ``enrolled``. A device already in the registry keeps its row (its
    history and frames); its groups gain the enrolled ones either way."""
    tx.execute(
        "INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, board) VALUES (?, 0, 0, ?) "
        "ON CONFLICT (device_id) DO NOTHING",
        (device_id, board),
    )
    for group in groups:
        add_group(tx, device_id, group)


def apply_state(tx: Tx, device_id: str, st: state_pb2.DeviceState, now_ms: int) -> str:
    """Apply a birth, will or going-to-sleep message. Returns "applied", "stale" or "new".

    Ordered by (incarnation, session): a message of the device's current incarnation whose
    session is lower than the last one seen is stale (a late will of an older connection). A
    birth (ONLINE) of another incarnation is the device starting again after its state was
    wiped: its session numbering restarts, so it is applied whatever its session; any other
    state of another incarnation is stale. A stale message changes nothing but last_seen. A
    session no device reached (a forged state) is undone by the device's own frames
    (:func:`frames_seen`).
    """
    new = touch(tx, device_id, now_ms)
    row = tx.one(
        "SELECT session, presence, incarnation FROM devices WHERE device_id = ?", (device_id,)
    )
    assert row is not None
    incarnation = incarnation_tag(st.incarnation)
    if not new:
        if incarnation != row["incarnation"]:
            if st.presence != state_pb2.PRESENCE_ONLINE:
                return "stale"
        elif st.session < row["session"]:
            return "stale"
        elif st.session == row["session"] and row["presence"] == REVOKED:
            return "stale"  # the retained birth of the connection `device rm` dropped
    presence = PRESENCE_NAMES.get(st.presence, "unknown")
    tx.execute(
        "UPDATE devices SET presence = ?, presence_ms = ?, session = ?, next_wake_ms = ?, "
        "incarnation = ? WHERE device_id = ?",
        (presence, now_ms, st.session, st.next_wake_ms, incarnation, device_id),
    )
    if st.presence == state_pb2.PRESENCE_ONLINE:
        tx.execute(
            "UPDATE devices SET firmware = ?, platform = ?, board = ?, capabilities = ?, "
            "wake_cause = ?, ota_slot = ?, info = ?, max_payload = ? WHERE device_id = ?",
            (
                st.firmware_version,
                st.platform,
                st.board,
                json.dumps(sorted(st.capabilities)),
                wake_cause_name(st.wake_cause),
                st.ota_slot,
                json.dumps(dict(st.info), sort_keys=True),
                st.max_payload,
                device_id,
            ),
        )
        # Groups the device declares join those assigned through the API; an invalid name
        # (the device's own config is wrong) is left out rather than refusing the birth.
        for group in st.groups:
            if topics.is_valid_device_id(group):
                add_group(tx, device_id, group)
    return "new" if new else "applied"


def revoked(tx: Tx, device_id: str, now_ms: int) -> None:
    """``camfleet device rm``: the broker dropped the device's connection, and a client the
    dynamic-security plugin disconnects gets no will published, so nothing else would ever say
    it is gone: its presence becomes ``revoked`` here, shown as offline (its row, history and
    frames stay). The birth of the dropped connection stays retained on the broker and comes
    again whenever the controller subscribes: :func:`apply_state` takes it as stale. A device
    enrolled again connects with a new session and is online again."""
    tx.execute(
        "UPDATE devices SET presence = ?, presence_ms = ? WHERE device_id = ?",
        (REVOKED, now_ms, device_id),
    )


def frames_seen(tx: Tx, device_id: str, live: dict[str, int], now_ms: int) -> bool:
    """The device sent live (not historical) frames: {incarnation tag: highest session}.

    Frames prove the device runs that incarnation and session now. When the registry holds a
    higher session of that incarnation (only a forged state can put it there: a device's
    session never goes back) or another incarnation, the registry is wrong: it takes the
    frames' incarnation and session and the device is online again. Returns True then.
    Also records the contact (``touch``).
    """
    touch(tx, device_id, now_ms)
    row = tx.one("SELECT session, incarnation FROM devices WHERE device_id = ?", (device_id,))
    if row is None or not live:
        return False
    incarnation, session = max(live.items(), key=lambda kv: kv[1])
    if row["incarnation"] in live:
        incarnation, session = row["incarnation"], live[row["incarnation"]]
        if session >= row["session"]:
            return False
    tx.execute(
        "UPDATE devices SET presence = 'online', presence_ms = ?, session = ?, incarnation = ? "
        "WHERE device_id = ?",
        (now_ms, session, incarnation, device_id),
    )
    return True


def add_group(tx: Tx, device_id: str, group: str) -> None:
    tx.execute(
        "INSERT INTO device_groups (device_id, group_name) VALUES (?, ?) "
        "ON CONFLICT (device_id, group_name) DO NOTHING",
        (device_id, group),
    )


def set_groups(tx: Tx, device_id: str, groups: list[str]) -> None:
    tx.execute("DELETE FROM device_groups WHERE device_id = ?", (device_id,))
    for group in groups:
        add_group(tx, device_id, group)


def set_tags(tx: Tx, device_id: str, tags: dict[str, str]) -> None:
    tx.execute(
        "UPDATE devices SET tags = ? WHERE device_id = ?",
        (json.dumps(tags, sort_keys=True), device_id),
    )


def groups_of(tx: Tx, device_id: str) -> list[str]:
    rows = tx.query(
        "SELECT group_name FROM device_groups WHERE device_id = ? ORDER BY group_name",
        (device_id,),
    )
    return [r["group_name"] for r in rows]


def members(tx: Tx, group: str | None) -> list[str]:
    """Device ids of a group, or of the whole fleet when ``group`` is None."""
    if group is None:
        rows = tx.query("SELECT device_id FROM devices ORDER BY device_id")
    else:
        rows = tx.query(
            "SELECT device_id FROM device_groups WHERE group_name = ? ORDER BY device_id",
            (group,),
        )
    return [r["device_id"] for r in rows]


def is_sleeper(row: Row) -> bool:
    """A node that deep-sleeps: it gets its schedule compiled into its desired config."""
    return (
        "deep_sleep" in json.loads(row.get("capabilities") or "[]") or row["presence"] == "asleep"
    )


def derive_state(row: Row, now_ms: int, overdue_grace_ms: int, silent_ms: int) -> str:
    """online / asleep / overdue / offline / unknown, from presence, next wake and last contact."""
    presence = row["presence"]
    if presence == REVOKED:
        return "offline"  # by `camfleet device rm`: it cannot connect
    if presence == "asleep":
        next_wake = row["next_wake_ms"]
        if next_wake and now_ms > next_wake + overdue_grace_ms:
            return "overdue"
        return "asleep"
    if presence in ("online", "offline"):
        return str(presence)
    if row["last_seen_ms"] == 0:
        return "enrolled"  # by `camfleet device add`, never heard from
    return "online" if now_ms - row["last_seen_ms"] <= silent_ms else "unknown"


def device_row_to_json(tx: Tx, row: Row, state: str) -> dict[str, Any]:
    return {
        "device_id": row["device_id"],
        "state": state,
        "presence": row["presence"],
        "session": row["session"],
        "incarnation": row["incarnation"],
        "first_seen_ms": row["first_seen_ms"],
        "last_seen_ms": row["last_seen_ms"],
        "next_wake_ms": row["next_wake_ms"] or None,
        "firmware": row["firmware"],
        "platform": row["platform"],
        "board": row["board"],
        "capabilities": json.loads(row["capabilities"]),
        "wake_cause": row["wake_cause"],
        "ota_slot": row["ota_slot"],
        "info": json.loads(row["info"]),
        "tags": json.loads(row["tags"]),
        "groups": groups_of(tx, row["device_id"]),
        "last_frame_ms": row["last_frame_ms"] or None,
    }


def add_telemetry(
    tx: Tx, device_id: str, t: telemetry_pb2.Telemetry, now_ms: int, history: History
) -> None:
    touch(tx, device_id, now_ms)
    data = json_format.MessageToDict(t, preserving_proto_field_name=True)
    tx.execute(
        "INSERT INTO telemetry (device_id, ts_ms, received_ms, session, data) VALUES (?,?,?,?,?)",
        (device_id, t.timestamp_ms, now_ms, t.session, json.dumps(data, sort_keys=True)),
    )
    history.added(tx, device_id)


def add_event(
    tx: Tx, device_id: str, e: telemetry_pb2.Event, now_ms: int, history: History
) -> None:
    touch(tx, device_id, now_ms)
    attributes = dict(e.attributes)
    if e.HasField("ota"):
        attributes["ota"] = json.dumps(json_format.MessageToDict(e.ota))
    tx.execute(
        "INSERT INTO events (device_id, ts_ms, received_ms, session, type, severity, message, "
        "attributes) VALUES (?,?,?,?,?,?,?,?)",
        (
            device_id,
            e.timestamp_ms,
            now_ms,
            e.session,
            e.type,
            telemetry_pb2.Severity.Name(e.severity).removeprefix("SEVERITY_").lower()
            if e.severity in telemetry_pb2.Severity.values()
            else str(e.severity),
            e.message,
            json.dumps(attributes, sort_keys=True),
        ),
    )
    history.added(tx, device_id)


class History:
    """Bounds a device's rows in ``table`` (telemetry or events) to about ``keep``, at a cost per
    insert that does not grow with ``keep`` or with the history.

    Counting a device's rows on every insert costs a walk over up to ``keep`` index entries per
    message (~0.2 ms at 1,400 rows), and that grew the controller's CPU per wake with history.
    Instead every ``keep // 8`` inserts of a device (counted in memory: a restart only delays the
    next trim) one trim deletes what lies beyond the newest ``keep``: at most ``keep + keep // 8``
    rows per device (twice that excess across a restart), ~8 index steps per insert on average.
    """

    def __init__(self, table: str, keep: int) -> None:
        assert table in ("telemetry", "events")  # a constant of this module, never user input
        self.table = table
        self.keep = keep
        self.every = max(1, keep // 8)
        self._since: dict[str, int] = {}

    def added(self, tx: Tx, device_id: str) -> None:
        n = self._since.get(device_id, 0) + 1
        if n < self.every:
            self._since[device_id] = n
            return
        self._since[device_id] = 0
        # The newest row beyond ``keep`` and everything older goes (rows received in the same
        # millisecond as that one too: "about keep").
        cutoff = tx.scalar(
            f"SELECT received_ms FROM {self.table} WHERE device_id = ? "
            "ORDER BY received_ms DESC LIMIT 1 OFFSET ?",
            (device_id, self.keep),
        )
        if cutoff is not None:
            tx.execute(
                f"DELETE FROM {self.table} WHERE device_id = ? AND received_ms <= ?",
                (device_id, cutoff),
            )
