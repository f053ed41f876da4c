"""The storage interface every repository uses: transactions over a bounded connection pool."""

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
    """Base class of the adapters: a bounded pool of connections, ``transaction()`` and ``read()``.

    A transaction borrows a connection from the pool and gives it back when it ends, whichever
    thread ran it. Nothing is kept per thread, so a short-lived thread (a worker, an HTTP request
    thread) cannot leave a connection behind: the process holds at most ``max_connections``
    connections however many threads it ever starts. (The old design, a connection per thread
    kept until ``close()``, leaked two file descriptors and ~166 KB per thread that ever touched
    the registry.) Connections stay open while idle in the pool, so the common path opens none.

    Subclasses implement ``_connect`` (a DB-API connection in autocommit-off mode), ``ddl`` (map
    the neutral type names of migrations onto the dialect) and ``placeholder``.
    """

    placeholder = "?"
    dialect = "generic"
    #: Most connections open at once; a transaction beyond them waits for one to come back.
    max_connections = 8
    #: How long a transaction waits for a free connection before it fails.
    acquire_timeout_s = 60.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: list[Any] = []
        self._open = 0  # connections that exist: idle + borrowed
        self._closed = False

    def _connect(self) -> Any:
        raise NotImplementedError

    def ddl(self, sql: str) -> str:
        return sql

    def open_connections(self) -> int:
        """Connections that exist right now (idle in the pool or in use)."""
        with self._cond:
            return self._open

    def _acquire(self) -> Any:
        with self._cond:
            if self._closed:
                raise RuntimeError("the database is closed")
            if not self._cond.wait_for(
                lambda: self._idle or self._open < self.max_connections, self.acquire_timeout_s
            ):
                raise TimeoutError(
                    f"no free database connection within {self.acquire_timeout_s:.0f} s "
                    f"({self.max_connections} in use)"
                )
            if self._idle:
                return self._idle.pop()
            self._open += 1  # reserve the slot before connecting outside the lock
        try:
            return self._connect()
        except BaseException:
            self._forget()
            raise

    def _release(self, conn: Any, healthy: bool) -> None:
        with self._cond:
            keep = healthy and not self._closed
            if keep:
                self._idle.append(conn)
                self._cond.notify()
                return
        try:
            conn.close()
        except Exception:  # a broken connection may fail to close: it is dropped either way
            pass
        self._forget()

    def _forget(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Tx]:
        """A transaction: committed on success (durably), rolled back on error."""
        conn = self._acquire()
        healthy = True
        try:
            cur = conn.cursor()
            try:
                self._begin(cur, write)
                try:
                    yield Tx(cur, self.placeholder)
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
            finally:
                cur.close()
        except BaseException:
            healthy = self._reusable(conn)
            raise
        finally:
            self._release(conn, healthy)

    def _reusable(self, conn: Any) -> bool:
        """After an error: roll back whatever is still open; a connection that cannot even do
        that (a server connection that died) is closed instead of going back to the pool."""
        try:
            conn.rollback()
        except Exception:
            return False
        return True

    def _begin(self, cursor: Any, write: bool) -> None:
        """Start a transaction (SQLite writers: BEGIN IMMEDIATE, so they queue, never deadlock)."""

    def read(self) -> Any:
        """A short read-only transaction (never blocks on the writer in WAL mode)."""
        return self.transaction(write=False)

    def close(self) -> None:
        """Close the idle connections now and the borrowed ones when their transaction ends."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            try:
                conn.close()
            except Exception:  # closing from another thread: the connection dies with it
                pass
            self._forget()
