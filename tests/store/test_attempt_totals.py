"""The LLM attempts' totals are kept in the ledger as attempts are written, equal to a scan."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import replace
from pathlib import Path

from octopipe.store import reads
from octopipe.store.ledger import Ledger
from octopipe.store.records import AttemptRecord, CostTotals, Failure, StepDef, Success
from support.ledger import MakeLedger, failed_attempt, run_meta, units, valid_attempt

STEPS = (StepDef("walk", "expression"), StepDef("ask", "chunk"))


def scan(ledger: Ledger) -> tuple[object, ...]:
    return ledger._read(reads.scanned_cost_totals)


def fill(ledger: Ledger) -> None:
    ledger.add_units(units(6))
    claimed = ledger.claim_pending(0, 6)
    local_failure = AttemptRecord(outcome="failed", mode="local", stage="expression")
    ledger.record_failures(0, [Failure(claimed[0].uid, local_failure, terminal=True)])
    ledger.record_successes(0, [Success(c.uid, {"x": 1}) for c in claimed[1:]])
    asked = ledger.claim_pending(1, 5)
    ledger.record_failures(
        1, [Failure(asked[0].uid, failed_attempt(cost_usd=0.1, input_tokens=7), terminal=False)]
    )
    priced = [
        valid_attempt(cost_usd=0.2 + i / 7, input_tokens=10, output_tokens=3) for i in range(3)
    ]
    ledger.record_successes(
        1, [Success(c.uid, {"y": 2}, a) for c, a in zip(asked[1:4], priced, strict=True)]
    )
    unpriced = valid_attempt(cost_usd=None, input_tokens=5, cached_tokens=2)
    ledger.record_successes(1, [Success(asked[4].uid, {"y": 3}, unpriced)])


def same(a: CostTotals, b: CostTotals) -> bool:
    """Equal, the cost up to the order in which its additions were made."""
    return math.isclose(a.known_usd, b.known_usd, rel_tol=1e-12) and replace(
        a, known_usd=0.0
    ) == replace(b, known_usd=0.0)


def test_the_kept_totals_equal_a_scan_of_the_attempts(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(steps=STEPS)
    fill(ledger)
    totals = ledger.cost_totals()
    scanned = scan(ledger)
    # each write adds its attempts' sum: equal to a scan up to the order of float additions
    assert math.isclose(totals.known_usd, scanned[0], rel_tol=1e-12)  # type: ignore[arg-type]
    assert (
        totals.unknown_cost_attempts,
        totals.attempts,
        totals.input_tokens,
        totals.output_tokens,
        totals.cached_tokens,
    ) == scanned[1:]
    assert totals.attempts == 5 and totals.unknown_cost_attempts == 1  # the local one is not
    assert totals.input_tokens == 7 + 30 + 5 and totals.cached_tokens == 2


def test_changed_and_deleted_attempts_change_the_totals(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.create(path, run_meta(), STEPS) as ledger:
        fill(ledger)
    db = sqlite3.connect(path)
    db.execute("UPDATE attempts SET cost_usd = 1.0 WHERE cost_usd IS NULL")
    db.execute("UPDATE attempts SET mode = 'local' WHERE input_tokens = 7")
    db.execute(
        "DELETE FROM attempts WHERE id = (SELECT MAX(id) FROM attempts WHERE mode = 'realtime')"
    )
    db.commit()
    db.close()
    with Ledger.open(path, readonly=True) as ledger:
        totals = ledger.cost_totals()
        assert totals.attempts == 3 and totals.unknown_cost_attempts == 0
        assert abs(totals.known_usd - scan(ledger)[0]) < 1e-12
        assert (totals.attempts, totals.input_tokens) == (scan(ledger)[2], scan(ledger)[3])


def test_a_ledger_made_before_the_totals_is_read_by_a_scan_then_given_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.create(path, run_meta(), STEPS) as ledger:
        fill(ledger)
        expected = ledger.cost_totals()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE attempt_totals; DROP TRIGGER IF EXISTS attempt_totals_insert; "
        "DROP TRIGGER attempt_totals_update; DROP TRIGGER attempt_totals_delete; "
        "DROP TABLE cost_groups; DROP TRIGGER IF EXISTS cost_groups_insert; "  # and what came after it
        "DROP TRIGGER cost_groups_update; DROP TRIGGER cost_groups_delete; "
        "DELETE FROM migrations WHERE seq >= 6;"  # 0006_attempt_totals and every later one
    )
    db.close()
    with Ledger.open(path, readonly=True) as ledger:  # a reader does without the table
        assert same(ledger.cost_totals(), expected)
    Ledger.open(path).close()  # a writer adds it, filled from the attempts already there
    db = sqlite3.connect(path)
    assert db.execute("SELECT attempts FROM attempt_totals").fetchone() == (expected.attempts,)
    db.close()
    with Ledger.open(path, readonly=True) as ledger:
        assert same(ledger.cost_totals(), expected)
