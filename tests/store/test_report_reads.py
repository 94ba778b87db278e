"""The report's queries read indexes, never every row of a table, and never sort what an
index already orders: checked on the query plans SQLite chooses for a ledger with data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from octopipe.store import report_reads
from octopipe.store.schema import MIGRATIONS, READERS_MAY_LACK
from support.report_runs import build

PARAMS = {"k": 2, "failed": "failed", "exhausted": "exhausted", "samples": 3}


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(build(tmp_path).ledger)
    db.execute("ANALYZE")  # as a long-lived ledger would have after `PRAGMA optimize`
    return db


def plan(conn: sqlite3.Connection, sql: str) -> list[str]:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, PARAMS)]


def test_attempt_totals_are_one_pass_over_the_covering_index(conn: sqlite3.Connection) -> None:
    assert plan(conn, report_reads.ATTEMPT_GROUPS) == [
        "SCAN attempts USING COVERING INDEX attempts_by_step"
    ]


def test_units_retried_are_index_ranges(conn: sqlite3.Connection) -> None:
    steps = plan(conn, report_reads.UNITS_RETRIED)
    assert (
        "SEARCH attempts USING COVERING INDEX attempts_by_step "
        "(step_idx=? AND outcome=? AND attempt_no>?)"
    ) in steps
    assert not any(s.startswith("SCAN") for s in steps), steps


def test_failures_are_read_from_their_index_ranges(conn: sqlite3.Connection) -> None:
    for sql, search in (
        (report_reads.STAGE_COUNTS, "SEARCH unit_steps USING INDEX unit_steps_state"),
        (report_reads.NOW_FAILING, "SEARCH unit_steps USING INDEX unit_steps_state"),
        (report_reads.FAILED_ATTEMPTS, "SEARCH attempts USING INDEX attempts_by_step"),
    ):
        steps = plan(conn, sql)
        assert any(s.startswith(search) for s in steps), steps
        assert not any(s.startswith(("SCAN unit_steps", "SCAN attempts")) for s in steps), steps


def test_the_report_index_is_a_named_migration_readers_can_do_without() -> None:
    names = [name for name, _ in MIGRATIONS]
    assert "0003_attempts_by_step" in names and "0003_attempts_by_step" in READERS_MAY_LACK
    sql = dict(MIGRATIONS)["0003_attempts_by_step"]
    assert sql.strip().startswith("CREATE INDEX attempts_by_step ON attempts(")
    assert sql.count(";") == 1  # an index, nothing a reader would miss
