"""The storage layer's one query text runs on SQLite and PostgreSQL, literals included."""

from __future__ import annotations

from typing import Any


def test_question_marks_and_percent_signs_in_literals_are_not_placeholders(database: Any) -> None:
    sql = (
        "SELECT ? AS a, 'what?' AS b, 'it''s 100% ?' AS c, "  # literals with ? and %
        '? AS "why?", '  # a quoted identifier with a ?
        "/* a comment? */ ? AS d -- and another?\n"
    )
    with database.read() as tx:
        row = tx.one(sql, (1, "two", 3))
    assert row == {"a": 1, "b": "what?", "c": "it's 100% ?", "why?": "two", "d": 3}


def test_like_with_a_percent_literal_and_a_placeholder(database: Any) -> None:
    with database.transaction() as tx:
        tx.execute("CREATE TABLE t (name TEXT)")
        tx.executemany("INSERT INTO t (name) VALUES (?)", [("cam-1",), ("door?",), ("x",)])
    with database.read() as tx:
        rows = tx.query(
            "SELECT name FROM t WHERE name LIKE 'cam%' OR name = ? ORDER BY name", ("door?",)
        )
    assert [r["name"] for r in rows] == ["cam-1", "door?"]
