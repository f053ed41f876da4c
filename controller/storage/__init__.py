"""The registry's storage layer: one Database interface, SQLite (WAL) as the embedded default.

Queries use ``?`` placeholders and portable SQL (``INSERT ... ON CONFLICT``, ``RETURNING``) that
PostgreSQL also runs; only the adapter knows dialect details (pragmas, DDL type names).
"""

from pathlib import Path

from camfleet.controller.storage.database import Database, Tx
from camfleet.controller.storage.sqlite import SqliteDatabase
from camfleet.errors import UserError


def open_database(url: str, default_sqlite: Path) -> Database:
    """``""`` -> SQLite at ``default_sqlite``; ``sqlite:///path``; ``postgresql://...``."""
    if not url:
        return SqliteDatabase(default_sqlite)
    if url.startswith("sqlite:///"):
        return SqliteDatabase(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from camfleet.controller.storage.postgres import PostgresDatabase

        return PostgresDatabase(url)
    raise UserError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")


__all__ = ["Database", "SqliteDatabase", "Tx", "open_database"]
