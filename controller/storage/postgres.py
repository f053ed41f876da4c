"""PostgreSQL adapter (psycopg 3): the same repositories and migrations as SQLite.

Only placeholders (``%s``) and DDL type names differ; every query is shared. Select it with
``database = "postgresql://user@host/db"``. psycopg is an optional dependency
(``pip install 'camfleet[postgres]'``).
"""

from __future__ import annotations

from typing import Any

from camfleet.controller.storage.database import Database

_TYPES = {"{blob}": "BYTEA", "{bigint}": "BIGINT", "{text}": "TEXT", "{real}": "DOUBLE PRECISION"}


class PostgresDatabase(Database):
    dialect = "postgresql"
    placeholder = "%s"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn

    def _connect(self) -> Any:
        import psycopg

        # Not autocommit: psycopg opens a transaction at the first statement; commit/rollback
        # end it (Database.transaction does both).
        return psycopg.connect(self.dsn, autocommit=False)

    def _reusable(self, conn: Any) -> bool:
        # A connection the server dropped is "broken": rolling it back may not even raise.
        return not conn.broken and super()._reusable(conn)

    def ddl(self, sql: str) -> str:
        for neutral, concrete in _TYPES.items():
            sql = sql.replace(neutral, concrete)
        return sql
