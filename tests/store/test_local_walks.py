"""record_clean_walks: a local chain's clean passes in their final form, one write per unit
and step, leaving the very state the step-by-step path leaves."""

from __future__ import annotations

from typing import Any

import pytest

from octopipe.errors import StoreError
from octopipe.store.codec import dumps
from octopipe.store.ledger import Ledger
from octopipe.store.records import CleanWalk, RunnerIdentity, StepDef, Success
from support.ledger import MakeLedger, units

THREE_THEN_LLM = (
    StepDef("walk", "expression"),
    StepDef("report", "expression"),
    StepDef("tally", "expression"),
    StepDef("judge", "chunk"),
)
RUNNER = RunnerIdentity("tok-1", "host", 123, "2026-12-02T00:00:00.000Z")


def _rows(ledger: Ledger) -> list[tuple[Any, ...]]:
    """Every unit_steps row but its time stamp."""
    return ledger._db.execute(
        """SELECT uid, step_idx, state, attempts, attempts_base, output_json, last_attempt_id,
                  last_stage, last_error, claimed_by
           FROM unit_steps ORDER BY step_idx, uid"""
    ).fetchall()


def _outputs(uid: int, depth: int) -> list[dict[str, Any]]:
    return [{f"s{k}": uid * 10 + k, "trail": [uid, k]} for k in range(depth)]


def _step_by_step(ledger: Ledger, uids: list[int], depth: int) -> None:
    with ledger.transaction():
        ledger.claim_units(0, uids)
        for k in range(depth):
            ledger.record_successes(
                k,
                [Success(uid, out[k]) for uid, out in ((u, _outputs(u, depth)) for u in uids)],
                claim_next=k + 1 < depth,
            )


def _clean(uids: list[int], depth: int) -> list[CleanWalk]:
    return [
        CleanWalk(uid, tuple(dumps(o, what="test") for o in _outputs(uid, depth))) for uid in uids
    ]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_end_state_equals_the_step_by_step_path(make_ledger: MakeLedger, depth: int) -> None:
    slow, fast = make_ledger(steps=THREE_THEN_LLM), make_ledger(steps=THREE_THEN_LLM)
    for ledger in (slow, fast):
        ledger.add_units(units(5))
        ledger.register_runner(RUNNER)
    uids = [1, 2, 3, 4, 5]
    _step_by_step(slow, uids, depth)
    assert fast.record_clean_walks(0, _clean(uids, depth)) == 5
    assert _rows(fast) == _rows(slow)
    # the next step holds each unit pending; the results' version moved as it does step by step
    assert {r[2] for r in _rows(fast) if r[1] == depth} == {"pending"}
    assert fast.results_version() > 0
    assert [rec for _, rec in fast.iter_valid(depth - 1)] == [
        {"i": uid - 1, **{k: v for o in _outputs(uid, depth) for k, v in o.items()}} for uid in uids
    ]


def test_walks_of_different_lengths_in_one_call(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(steps=THREE_THEN_LLM)
    ledger.add_units(units(2))
    ledger.record_clean_walks(0, [*_clean([1], 3), *_clean([2], 1)])
    states = {(r[0], r[1]): r[2] for r in _rows(ledger)}
    assert states == {
        (1, 0): "valid",
        (1, 1): "valid",
        (1, 2): "valid",
        (1, 3): "pending",
        (2, 0): "valid",
        (2, 1): "pending",
    }


def test_a_unit_no_longer_pending_writes_nothing(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(steps=THREE_THEN_LLM)
    ledger.add_units(units(3))
    ledger.claim_units(0, [2])  # another writer took unit 2
    before = _rows(ledger)
    with pytest.raises(StoreError, match="1 of 3 units were no longer pending at step 0"):
        ledger.record_clean_walks(0, _clean([1, 2, 3], 3))
    assert _rows(ledger) == before


def test_a_unit_already_at_a_later_step_writes_nothing(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(steps=THREE_THEN_LLM)
    ledger.add_units(units(1))
    ledger._db.execute(
        "INSERT INTO unit_steps(uid, step_idx, state, updated_at) VALUES (1, 1, 'pending', 'x')"
    )
    before = _rows(ledger)
    with pytest.raises(StoreError, match="already has a row at a later step"):
        ledger.record_clean_walks(0, _clean([1], 2))
    assert _rows(ledger) == before


def test_a_fan_out_step_in_the_walk_is_refused(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(steps=(StepDef("walk", "expression"), StepDef("expand", "fan_out")))
    ledger.add_units(units(1))
    with pytest.raises(ValueError, match="fan_out"):
        ledger.record_clean_walks(0, _clean([1], 2))
    assert [r[2] for r in _rows(ledger)] == ["pending"]


def test_a_walk_past_the_last_step_is_refused(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(steps=(StepDef("walk", "expression"),))
    ledger.add_units(units(1))
    with pytest.raises(ValueError, match="not a step of this run"):
        ledger.record_clean_walks(0, _clean([1], 2))
    assert ledger.record_clean_walks(0, _clean([1], 1)) == 1
    assert [r[2] for r in _rows(ledger)] == ["valid"]  # the last step: no row after it
