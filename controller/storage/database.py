"""The storage interface every repository uses: transactions over a connection per thread."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

Row = dict[str, Any]

# A quoted literal or identifier, a comment, a placeholder, or a percent sign, in that order.
_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|\?|%""", re.S)


@functools.lru_cache(maxsize=1024)
def format_style(sql: str) -> str:
    """Queries are written with ``?`` (SQLite's style); psycopg wants ``%s``.

    Only a ``?`` outside string literals, quoted identifiers and comments is a placeholder, and
    psycopg reads every ``%`` of the text (literals included) as the start of one, so a literal
    ``%`` becomes ``%%``. Cached: the queries are a fixed set of constants.
    """

    def swap(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "?":
            return "%s"
        return token.replace("%", "%%")

    return _TOKENS.sub(swap, sql)


class Tx:
    """One open transaction. ``execute`` returns the affected row count, ``query`` dict rows."""

    def __init__(self, cursor: Any, placeholder: str) -> None:
        self._cur = cursor
        self._placeholder = placeholder

    def _sql(self, sql: str) -> str:
        return sql if self._placeholder == "?" else format_style(sql)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cur.execute(self._sql(sql), tuple(params))
        return int(self._cur.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cur.executemany(self._sql(sql), [tuple(r) for r in rows])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cur.execute(self._sql(sql), tuple(params))
        names = [d[0] for d in self._cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in self._cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else next(iter(row.values()))


class Database:
    """Base class of the adapters: a connection per thread, ``transaction()`` and ``read()``.

    Subclasses implement ``_connect`` (a DB-API connection in autocommit-off mode), ``ddl`` (map
    the neutral type names of migrations onto the dialect) and ``placeholder``.
    """

    placeholder = "?"
    dialect = "generic"

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        raise NotImplementedError

    def ddl(self, sql: str) -> str:
        return sql

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Tx]:
        """A transaction: committed on success (durably), rolled back on error."""
        conn = self._conn()
        cur = conn.cursor()
        self._begin(cur, write)
        try:
            yield Tx(cur, self.placeholder)
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cur.close()

    def _begin(self, cursor: Any, write: bool) -> None:
        """Start a transaction (SQLite writers: BEGIN IMMEDIATE, so they queue, never deadlock)."""

    def read(self) -> Any:
        """A short read-only transaction (never blocks on the writer in WAL mode)."""
        return self.transaction(write=False)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # closing from another thread: the connection dies with it
                pass
        self._local = threading.local()
