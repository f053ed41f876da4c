"""Versioned schema migrations of the registry.

Each entry is applied once, in order, inside one transaction that also bumps
``schema_version``; a database newer than this code is refused. Type names are neutral
(``{bigint}``, ``{blob}``, ``{text}``, ``{real}``); the adapter maps them onto its dialect.
Never edit a released migration: append a new one.
"""

from __future__ import annotations

from camfleet.controller.storage.database import Database

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "initial registry",
        [
            """CREATE TABLE devices (
                device_id {text} PRIMARY KEY,
                first_seen_ms {bigint} NOT NULL,
                last_seen_ms {bigint} NOT NULL,
                presence {text} NOT NULL DEFAULT 'unknown',
                presence_ms {bigint} NOT NULL DEFAULT 0,
                session {bigint} NOT NULL DEFAULT 0,
                next_wake_ms {bigint} NOT NULL DEFAULT 0,
                firmware {text} NOT NULL DEFAULT '',
                platform {text} NOT NULL DEFAULT '',
                board {text} NOT NULL DEFAULT '',
                capabilities {text} NOT NULL DEFAULT '[]',
                wake_cause {text} NOT NULL DEFAULT '',
                ota_slot {text} NOT NULL DEFAULT '',
                info {text} NOT NULL DEFAULT '{}',
                tags {text} NOT NULL DEFAULT '{}',
                max_payload {bigint} NOT NULL DEFAULT 0,
                last_frame_ms {bigint} NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE device_groups (
                device_id {text} NOT NULL,
                group_name {text} NOT NULL,
                PRIMARY KEY (device_id, group_name)
            )""",
            """CREATE TABLE frames (
                device_id {text} NOT NULL,
                session {bigint} NOT NULL,
                seq {bigint} NOT NULL,
                capture_id {text} NOT NULL,
                captured_at_ms {bigint} NOT NULL,
                received_ms {bigint} NOT NULL,
                stored_ms {bigint} NOT NULL,
                size {bigint} NOT NULL,
                sha256 {text} NOT NULL,
                store_key {text} NOT NULL,
                content_type {text} NOT NULL,
                width {bigint} NOT NULL DEFAULT 0,
                height {bigint} NOT NULL DEFAULT 0,
                historical {bigint} NOT NULL DEFAULT 0,
                command_id {text} NOT NULL DEFAULT '',
                wake_cause {text} NOT NULL DEFAULT '',
                metadata {text} NOT NULL DEFAULT '{}',
                PRIMARY KEY (device_id, session, seq)
            )""",
            "CREATE INDEX frames_by_time ON frames (device_id, captured_at_ms)",
            "CREATE INDEX frames_by_stored ON frames (stored_ms)",
            """CREATE TABLE telemetry (
                device_id {text} NOT NULL,
                ts_ms {bigint} NOT NULL,
                received_ms {bigint} NOT NULL,
                session {bigint} NOT NULL,
                data {text} NOT NULL
            )""",
            "CREATE INDEX telemetry_by_device ON telemetry (device_id, received_ms)",
            """CREATE TABLE events (
                device_id {text} NOT NULL,
                ts_ms {bigint} NOT NULL,
                received_ms {bigint} NOT NULL,
                session {bigint} NOT NULL,
                type {text} NOT NULL,
                severity {text} NOT NULL,
                message {text} NOT NULL,
                attributes {text} NOT NULL
            )""",
            "CREATE INDEX events_by_device ON events (device_id, received_ms)",
            """CREATE TABLE commands (
                id {text} PRIMARY KEY,
                device_id {text} NOT NULL,
                group_name {text} NOT NULL DEFAULT '',
                action {text} NOT NULL,
                payload {blob} NOT NULL,
                status {text} NOT NULL,
                status_source {text} NOT NULL DEFAULT 'controller',
                detail {text} NOT NULL DEFAULT '',
                created_ms {bigint} NOT NULL,
                expires_ms {bigint} NOT NULL DEFAULT 0,
                sent_ms {bigint} NOT NULL DEFAULT 0,
                updated_ms {bigint} NOT NULL,
                attempts {bigint} NOT NULL DEFAULT 0,
                schedule_id {text} NOT NULL DEFAULT '',
                slot_ms {bigint} NOT NULL DEFAULT 0,
                capture_ids {text} NOT NULL DEFAULT '[]'
            )""",
            "CREATE INDEX commands_by_status ON commands (status)",
            "CREATE INDEX commands_by_device ON commands (device_id, created_ms)",
            """CREATE TABLE desired_layers (
                scope {text} NOT NULL,
                name {text} NOT NULL,
                config {blob} NOT NULL,
                updated_ms {bigint} NOT NULL,
                PRIMARY KEY (scope, name)
            )""",
            """CREATE TABLE device_desired (
                device_id {text} PRIMARY KEY,
                version {bigint} NOT NULL,
                config {blob} NOT NULL,
                updated_ms {bigint} NOT NULL,
                reported_version {bigint} NOT NULL DEFAULT 0,
                reported_error {text} NOT NULL DEFAULT '',
                reported_ms {bigint} NOT NULL DEFAULT 0,
                reported_config {blob}
            )""",
            """CREATE TABLE schedules (
                id {text} PRIMARY KEY,
                target_kind {text} NOT NULL,
                target {text} NOT NULL,
                kind {text} NOT NULL,
                spec {text} NOT NULL,
                capture_count {bigint} NOT NULL DEFAULT 1,
                enabled {bigint} NOT NULL DEFAULT 1,
                created_ms {bigint} NOT NULL,
                start_ms {bigint} NOT NULL,
                last_slot_ms {bigint} NOT NULL DEFAULT 0,
                next_slot_ms {bigint},
                fired {bigint} NOT NULL DEFAULT 0,
                missed {bigint} NOT NULL DEFAULT 0
            )""",
        ],
    ),
    (
        # A frame's identity is (device, incarnation, session, seq); a row is one (identity,
        # sha256): a same-identity frame with another digest is a conflict, kept as its own row.
        "frame incarnation and conflicts; device incarnation",
        [
            """CREATE TABLE frames_v2 (
                device_id {text} NOT NULL,
                incarnation {text} NOT NULL DEFAULT '',
                session {bigint} NOT NULL,
                seq {bigint} NOT NULL,
                sha256 {text} NOT NULL,
                conflict {bigint} NOT NULL DEFAULT 0,
                capture_id {text} NOT NULL,
                captured_at_ms {bigint} NOT NULL,
                received_ms {bigint} NOT NULL,
                stored_ms {bigint} NOT NULL,
                size {bigint} NOT NULL,
                store_key {text} NOT NULL,
                content_type {text} NOT NULL,
                width {bigint} NOT NULL DEFAULT 0,
                height {bigint} NOT NULL DEFAULT 0,
                historical {bigint} NOT NULL DEFAULT 0,
                command_id {text} NOT NULL DEFAULT '',
                wake_cause {text} NOT NULL DEFAULT '',
                metadata {text} NOT NULL DEFAULT '{}',
                PRIMARY KEY (device_id, incarnation, session, seq, sha256)
            )""",
            """INSERT INTO frames_v2 (device_id, incarnation, session, seq, sha256, conflict,
                capture_id, captured_at_ms, received_ms, stored_ms, size, store_key, content_type,
                width, height, historical, command_id, wake_cause, metadata)
               SELECT device_id, '', session, seq, sha256, 0, capture_id, captured_at_ms,
                received_ms, stored_ms, size, store_key, content_type, width, height, historical,
                command_id, wake_cause, metadata FROM frames""",
            "DROP TABLE frames",
            "ALTER TABLE frames_v2 RENAME TO frames",
            "CREATE INDEX frames_by_time ON frames (device_id, captured_at_ms)",
            "CREATE INDEX frames_by_stored ON frames (stored_ms)",
            "CREATE UNIQUE INDEX frames_by_key ON frames (store_key)",
            "ALTER TABLE devices ADD COLUMN incarnation {text} NOT NULL DEFAULT ''",
        ],
    ),
    (
        # A birth re-publishes the device's commands still "sent": found through this index it
        # costs what is pending, not the device's whole command history (commands_by_device).
        "commands by device and status",
        ["CREATE INDEX commands_by_device_status ON commands (device_id, status)"],
    ),
    (
        "ota: artifacts, device keys, rollouts",
        [
            """CREATE TABLE ota_artifacts (
                id {text} PRIMARY KEY,
                sha256 {text} NOT NULL UNIQUE,
                kind {text} NOT NULL,
                version {text} NOT NULL,
                project {text} NOT NULL DEFAULT '',
                idf_version {text} NOT NULL DEFAULT '',
                chip {text} NOT NULL DEFAULT '',
                platform {text} NOT NULL,
                size {bigint} NOT NULL,
                filename {text} NOT NULL DEFAULT '',
                created_ms {bigint} NOT NULL
            )""",
            """CREATE TABLE ota_device_keys (
                device_id {text} PRIMARY KEY,
                hmac_key {blob} NOT NULL,
                updated_ms {bigint} NOT NULL
            )""",
            """CREATE TABLE ota_rollouts (
                id {text} PRIMARY KEY,
                artifact_id {text} NOT NULL,
                version {text} NOT NULL,
                target {text} NOT NULL,
                options {text} NOT NULL,
                state {text} NOT NULL,
                phase {bigint} NOT NULL DEFAULT 0,
                reason {text} NOT NULL DEFAULT '',
                created_ms {bigint} NOT NULL,
                updated_ms {bigint} NOT NULL
            )""",
            """CREATE TABLE ota_rollout_devices (
                rollout_id {text} NOT NULL,
                device_id {text} NOT NULL,
                phase {bigint} NOT NULL,
                status {text} NOT NULL,
                from_version {text} NOT NULL DEFAULT '',
                attempts {bigint} NOT NULL DEFAULT 0,
                command_id {text} NOT NULL DEFAULT '',
                offered_ms {bigint} NOT NULL DEFAULT 0,
                deadline_ms {bigint} NOT NULL DEFAULT 0,
                blocks_done {bigint} NOT NULL DEFAULT 0,
                blocks_total {bigint} NOT NULL DEFAULT 0,
                detail {text} NOT NULL DEFAULT '',
                updated_ms {bigint} NOT NULL,
                PRIMARY KEY (rollout_id, device_id)
            )""",
            "CREATE INDEX ota_rollout_devices_by_device ON ota_rollout_devices (device_id)",
            """CREATE TABLE ota_rollout_events (
                rollout_id {text} NOT NULL,
                device_id {text} NOT NULL,
                ts_ms {bigint} NOT NULL,
                step {text} NOT NULL,
                detail {text} NOT NULL DEFAULT ''
            )""",
            "CREATE INDEX ota_rollout_events_by_rollout ON ota_rollout_events (rollout_id, ts_ms)",
        ],
    ),
    (
        "API users with roles (tokens hashed)",
        [
            """CREATE TABLE api_users (
                name {text} PRIMARY KEY,
                role {text} NOT NULL,
                token_hash {text} NOT NULL UNIQUE,
                created_ms {bigint} NOT NULL
            )""",
        ],
    ),
    (
        # Edge-agent bundles (kind edge-bundle) travel with a detached Ed25519 signature of their
        # SHA-256, checked at upload and put in every offer; ESP32 images carry theirs inside.
        "ota: detached signatures of edge bundles",
        ["ALTER TABLE ota_artifacts ADD COLUMN signature {blob}"],
    ),
    (
        "broker credentials delivered through desired config (camfleet device rotate)",
        [
            """CREATE TABLE device_credentials (
                device_id {text} PRIMARY KEY,
                message {blob} NOT NULL,
                updated_ms {bigint} NOT NULL
            )""",
            "ALTER TABLE device_desired ADD COLUMN credentials {blob}",
        ],
    ),
]


class SchemaTooNew(RuntimeError):
    pass


def migrate(db: Database) -> int:
    """Bring the schema up to date; return the version now in place."""
    with db.transaction() as tx:
        tx.execute(db.ddl("CREATE TABLE IF NOT EXISTS schema_version (version {bigint} NOT NULL)"))
        current = tx.scalar("SELECT MAX(version) FROM schema_version") or 0
    if current > len(MIGRATIONS):
        raise SchemaTooNew(
            f"the registry has schema version {current}, this controller knows {len(MIGRATIONS)}"
        )
    for version, (_, statements) in enumerate(MIGRATIONS[current:], start=current + 1):
        with db.transaction() as tx:
            if (tx.scalar("SELECT MAX(version) FROM schema_version") or 0) >= version:
                continue  # another controller migrated meanwhile
            for sql in statements:
                tx.execute(db.ddl(sql))
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    return len(MIGRATIONS)
