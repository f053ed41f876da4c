"""The registry's storage layer: one Database interface, SQLite (WAL) as the embedded default.

Queries use ``?`` placeholders and portable SQL (``INSERT ... ON CONFLICT``, ``RETURNING``) that
PostgreSQL also runs; only the adapter knows dialect details (pragmas, DDL type names).
"""

from camfleet.controller.storage.database import Database, Tx
from camfleet.controller.storage.sqlite import SqliteDatabase

__all__ = ["Database", "SqliteDatabase", "Tx"]
