"""Migration 0009: the per-unit tables check their enumerated columns with comparisons, not IN
lists (SQLite builds a temporary table per IN list each time a statement runs), and the checks
still refuse every value they refused before."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from octopipe.store import check_rewrite, schema
from octopipe.store.ledger import Ledger
from support.ledger import WALK_CLASSIFY_JUDGE, pass_step, run_meta, units

INSERT_ATTEMPT = """INSERT INTO attempts(uid, step_idx, attempt_no, mode, outcome, stage, tier)
                    VALUES (1, 0, 9, ?, ?, ?, ?)"""


def table_sql(conn: sqlite3.Connection, table: str) -> str:
    return conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()[0]


def made(path: Path, migrations: int | None = None, monkeypatch: pytest.MonkeyPatch | None = None):
    if migrations is None:
        ledger = Ledger.create(path, run_meta(), WALK_CLASSIFY_JUDGE)
    else:
        assert monkeypatch is not None
        with monkeypatch.context() as patch:
            patch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:migrations])
            ledger = Ledger.create(path, run_meta(), WALK_CLASSIFY_JUDGE)
    with ledger:
        ledger.add_units(units(2))
        pass_step(ledger, 0)
    return path


def test_the_rewrite_turns_each_list_into_comparisons_and_keeps_the_rest() -> None:
    sql = (
        "CREATE TABLE t (mode TEXT NOT NULL CHECK (mode IN ('batch','realtime')),\n"
        "    stage TEXT CHECK (stage IN ('render', 'parse')), n INTEGER CHECK (n >= 1))"
    )
    assert check_rewrite.checks_without_lists(sql) == (
        "CREATE TABLE t (mode TEXT NOT NULL CHECK ((mode = 'batch' OR mode = 'realtime')),\n"
        "    stage TEXT CHECK ((stage = 'render' OR stage = 'parse')), n INTEGER CHECK (n >= 1))"
    )


def test_a_new_ledger_checks_without_lists_and_refuses_the_same_values(tmp_path: Path) -> None:
    path = made(tmp_path / "ledger.db")
    conn = sqlite3.connect(path, isolation_level=None)
    for table in ("attempts", "unit_steps"):
        assert " IN (" not in table_sql(conn, table)
        assert " OR " in table_sql(conn, table)
    # no temporary table is built when an attempt is inserted (one per IN list before)
    plan = conn.execute("EXPLAIN " + INSERT_ATTEMPT, ("batch", "valid", None, None)).fetchall()
    assert not [op for op in plan if op[1] == "OpenEphemeral"]
    conn.execute("BEGIN")
    conn.execute(INSERT_ATTEMPT, ("batch", "failed", "parse", "flex"))  # every column allowed
    conn.execute("ROLLBACK")
    refused = [
        ("bogus", "valid", None, None),
        ("batch", "maybe", None, None),
        ("batch", "failed", "guess", None),
        ("batch", "valid", None, "cheap"),
    ]
    for values in refused:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            conn.execute(INSERT_ATTEMPT, values)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        conn.execute("UPDATE unit_steps SET state = 'done' WHERE uid = 1")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def test_an_older_ledger_is_given_the_rewrite_by_its_next_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = [name for name, _ in schema.MIGRATIONS].index("0009_checks_without_lists")
    path = made(tmp_path / "ledger.db", before, monkeypatch)
    conn = sqlite3.connect(path)
    assert " IN (" in table_sql(conn, "attempts")
    conn.close()
    with Ledger.open(path, readonly=True) as reader:  # readers need not wait for it
        assert reader.counts()[0]
    with Ledger.open(path) as writer:  # the writer applies it and goes on writing
        assert len(writer.claim_pending(1, 5)) == 2
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            writer._db.execute("UPDATE unit_steps SET state = 'done' WHERE uid = 1")
    conn = sqlite3.connect(path)
    assert " IN (" not in table_sql(conn, "attempts") + table_sql(conn, "unit_steps")
    assert [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY seq")] == [
        name for name, _ in schema.MIGRATIONS
    ]
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def test_a_rewrite_that_fails_half_way_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = [name for name, _ in schema.MIGRATIONS].index("0009_checks_without_lists")
    path = made(tmp_path / "ledger.db", before, monkeypatch)
    monkeypatch.setattr(check_rewrite, "_LIST_CHECKED", ("attempts", "no_such_table"))
    with pytest.raises(TypeError):  # the second table's SQL is not there
        Ledger.open(path)
    conn = sqlite3.connect(path)
    assert " IN (" in table_sql(conn, "attempts")  # the first table's rewrite was rolled back
    assert "0009_checks_without_lists" not in [
        r[0] for r in conn.execute("SELECT name FROM migrations")
    ]
    conn.close()
    monkeypatch.undo()
    Ledger.open(path).close()
    conn = sqlite3.connect(path)
    assert " IN (" not in table_sql(conn, "attempts")
    conn.close()
