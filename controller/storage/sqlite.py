"""SQLite adapter: WAL journal, synchronous=FULL (a commit survives power loss), busy timeout.

The only module allowed SQLite-specific syntax (pragmas, BEGIN IMMEDIATE, type names).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from camfleet.controller.storage.database import Database

#: Bytes the WAL file is truncated to after a checkpoint (see docs/controller.md, Storage).
WAL_SIZE_LIMIT = 64 * 1024 * 1024
_TYPES = {"{blob}": "BLOB", "{bigint}": "INTEGER", "{text}": "TEXT", "{real}": "REAL"}


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _connect(self) -> Any:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # The WAL is checkpointed every 1000 pages (~4 MB, SQLite's default) and then reused
        # from its start, but never shrinks: after a spike (a long reader holding back a
        # checkpoint) it would keep its peak size on the SD card. Truncate it back to this.
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        return _Autocommitless(conn)

    def _begin(self, cursor: Any, write: bool) -> None:
        cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def ddl(self, sql: str) -> str:
        for neutral, concrete in _TYPES.items():
            sql = sql.replace(neutral, concrete)
        return sql


class _Autocommitless:
    """sqlite3 in isolation_level=None mode with explicit BEGIN/COMMIT, shaped like DB-API."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def cursor(self) -> sqlite3.Cursor:
        return self._conn.cursor()

    def commit(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()
