"""The cost of each (provider, model, tier) is kept in the ledger as attempts are written
(migration 0007_cost_groups), equal to a scan of the attempts; the tiers `ps` shows come
from it; verify reports a drifted row and repair rebuilds it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from octopipe.store import reads
from octopipe.store.ledger import Ledger
from octopipe.store.records import AttemptRecord, Failure, StepDef, Success, TierTotal
from octopipe.store.totals_check import rebuild_totals, totals_problems
from support.ledger import MakeLedger, failed_attempt, run_meta, units, valid_attempt

STEPS = (StepDef("walk", "expression"), StepDef("ask", "chunk"))


def fill(ledger: Ledger) -> None:
    """Six units: a local failure, then LLM attempts at flex (two priced, one not), batch
    (one) and standard (one failed, priced)."""
    ledger.add_units(units(6))
    claimed = ledger.claim_pending(0, 6)
    local = AttemptRecord(outcome="failed", mode="local", stage="expression")
    ledger.record_failures(0, [Failure(claimed[0].uid, local, terminal=True)])
    ledger.record_successes(0, [Success(c.uid, {"x": 1}) for c in claimed[1:]])
    asked = ledger.claim_pending(1, 5)
    standard = failed_attempt(cost_usd=0.5, input_tokens=7, tier="standard")
    ledger.record_failures(1, [Failure(asked[0].uid, standard, terminal=False)])
    flex = [valid_attempt(cost_usd=0.1, tier="flex"), valid_attempt(cost_usd=0.2, tier="flex")]
    ledger.record_successes(
        1, [Success(c.uid, {"y": 2}, a) for c, a in zip(asked[1:3], flex, strict=True)]
    )
    unpriced = valid_attempt(cost_usd=None, tier="flex")
    batch = valid_attempt(cost_usd=2.0, mode="batch", tier="batch")
    ledger.record_successes(
        1, [Success(asked[3].uid, {"y": 3}, unpriced), Success(asked[4].uid, {"y": 4}, batch)]
    )


def test_the_kept_tier_totals_equal_a_scan_costliest_first(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(steps=STEPS)
    fill(ledger)
    kept = ledger.tier_totals()
    assert [t.tier for t in kept] == ["batch", "standard", "flex"]
    flex = kept[2]
    assert (flex.calls, flex.unknown_calls, flex.cost_usd) == (3, 1, None)
    assert flex.known_usd == pytest.approx(0.3)
    assert kept[0] == TierTotal("batch", 1, 2.0, 0) and kept[1] == TierTotal("standard", 1, 0.5, 0)
    assert ledger.cost_by_tier() == ledger._read(reads.scanned_cost_groups)


def _tamper(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def test_changed_and_deleted_attempts_move_between_tiers(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.create(path, run_meta(), STEPS) as ledger:
        fill(ledger)
    _tamper(
        path,
        "UPDATE attempts SET tier = 'standard', cost_usd = 1.0 WHERE cost_usd IS NULL",
        "DELETE FROM attempts WHERE tier = 'batch'",
    )
    with Ledger.open(path, readonly=True) as ledger:
        kept = {t.tier: t for t in ledger.tier_totals()}
        assert set(kept) == {"standard", "flex"}  # an emptied tier is not listed
        assert (kept["standard"].calls, kept["standard"].known_usd) == (2, 1.5)
        assert (kept["flex"].calls, kept["flex"].unknown_calls) == (2, 0)
        assert ledger._read(totals_problems) == []


def test_a_drifted_tier_row_is_reported_and_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.create(path, run_meta(), STEPS) as ledger:
        fill(ledger)
        before = ledger.tier_totals()
    _tamper(path, "UPDATE cost_groups SET known_usd = 9.0 WHERE tier = 'batch'")
    db = sqlite3.connect(path)
    problems = totals_problems(db)
    assert problems == [
        "the cost totals of fake/m/batch say known_usd = 9.0, the attempts add up to 2.0"
    ]
    with db:
        assert rebuild_totals(db) is True
    assert totals_problems(db) == []
    db.close()
    with Ledger.open(path, readonly=True) as ledger:
        assert ledger.tier_totals() == before


def test_a_ledger_made_before_the_cost_groups_is_read_by_a_scan_then_given_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.create(path, run_meta(), STEPS) as ledger:
        fill(ledger)
        expected = ledger.tier_totals()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE cost_groups; DROP TRIGGER IF EXISTS cost_groups_insert; "
        "DROP TRIGGER cost_groups_update; DROP TRIGGER cost_groups_delete; "
        "DELETE FROM migrations WHERE seq >= 7;"  # 0007_cost_groups and every later one
    )
    db.close()
    with Ledger.open(path, readonly=True) as ledger:  # a reader does without the table
        assert ledger.tier_totals() == expected
    Ledger.open(path).close()  # a writer adds it, filled from the attempts already there
    with Ledger.open(path, readonly=True) as ledger:
        assert ledger.tier_totals() == expected
        assert ledger.cost_by_tier() == ledger._read(reads.scanned_cost_groups)
        assert ledger._read(totals_problems) == []
