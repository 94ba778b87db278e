"""Migration ``0009_checks_without_lists``: CHECKs written as comparisons instead of IN lists.

The CHECKs of the two tables written once or more per unit (``attempts``, ``unit_steps``) say
``c = 'a' OR c = 'b' ...`` instead of ``c IN ('a', 'b', ...)``: the same rule (NULL passes
both), but SQLite builds a temporary table for every IN list each time a statement runs, which
made those CHECKs most of the cost of inserting an attempt. A CHECK can be rewritten in place
(the table's stored SQL, SQLite's documented procedure for changing constraints that the rows
already satisfy), so no table is copied.
"""

from __future__ import annotations

import re
import sqlite3

_IN_LIST = re.compile(r"\b(\w+) IN \(((?:'\w+',\s*)*'\w+')\)")
_LIST_CHECKED = ("attempts", "unit_steps")


def _as_comparisons(match: re.Match[str]) -> str:
    column, values = match.group(1), re.findall(r"'\w+'", match.group(2))
    return "(" + " OR ".join(f"{column} = {value}" for value in values) + ")"


def checks_without_lists(sql: str) -> str:
    """``sql`` (a CREATE TABLE) with each ``column IN ('a', ...)`` written as comparisons."""
    return _IN_LIST.sub(_as_comparisons, sql)


def checks_without_lists_migration(conn: sqlite3.Connection) -> None:
    """Migration ``0009_checks_without_lists``, inside the migration's transaction."""
    version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
    conn.execute("PRAGMA writable_schema = ON")
    try:
        for table in _LIST_CHECKED:
            (sql,) = conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            conn.execute(
                "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                (checks_without_lists(sql), table),
            )
        conn.execute(f"PRAGMA schema_version = {version + 1}")  # every connection re-reads it
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
