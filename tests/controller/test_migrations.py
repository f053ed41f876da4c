"""Migration 2 (frame incarnation and conflicts) keeps every existing frame, on SQLite and
PostgreSQL."""

from __future__ import annotations

from camfleet.controller.storage import migrations
from camfleet.controller.storage.database import Database


def test_frames_stored_before_incarnations_survive_the_migration(database: Database) -> None:
    with database.read() as tx:  # every table the migrations made, whatever steps exist now
        if database.dialect == "sqlite":
            sql = "SELECT name AS t FROM sqlite_master WHERE type = 'table'"
        else:
            sql = "SELECT tablename AS t FROM pg_tables WHERE schemaname = current_schema()"
        tables = [r["t"] for r in tx.query(sql) if not r["t"].startswith("sqlite_")]
    with database.transaction() as tx:  # the fixture migrated to the latest: start over at 1
        for table in tables:
            tx.execute(
                f"DROP TABLE {table} CASCADE"
                if database.dialect != "sqlite"
                else f"DROP TABLE {table}"
            )
    latest = migrations.MIGRATIONS
    try:
        migrations.MIGRATIONS = latest[:1]
        assert migrations.migrate(database) == 1
    finally:
        migrations.MIGRATIONS = latest
    with database.transaction() as tx:
        tx.execute(
            "INSERT INTO devices (device_id, first_seen_ms, last_seen_ms, session) "
            "VALUES ('cam', 1, 1, 4)"
        )
        tx.execute(
            "INSERT INTO frames (device_id, session, seq, capture_id, captured_at_ms, "
            "received_ms, stored_ms, size, sha256, store_key, content_type) "
            "VALUES ('cam', 4, 2, '4-2', 10, 11, 12, 3, 'ab', 'frames/cam/x.jpg', 'image/jpeg')"
        )
    assert migrations.migrate(database) == len(latest)
    with database.read() as tx:
        rows = tx.query("SELECT device_id, incarnation, session, seq, sha256, conflict FROM frames")
        device = tx.one("SELECT incarnation, session FROM devices WHERE device_id = 'cam'")
    assert rows == [
        {"device_id": "cam", "incarnation": "", "session": 4, "seq": 2, "sha256": "ab",
         "conflict": 0}
    ]  # fmt: skip
    assert device == {"incarnation": "", "session": 4}
