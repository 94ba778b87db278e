"""verify / find_missing / repair_missing: every id, never a capped sample."""

from __future__ import annotations

import json

from octopipe.core.states import UnitStepState
from octopipe.store.ledger import Ledger
from support.ledger import EXPAND_JUDGE, MakeLedger, failed_attempt, pass_step, tamper, units

PENDING, VALID = UnitStepState.PENDING, UnitStepState.VALID


def ids_at(ledger: Ledger, step_idx: int) -> set[str]:
    return {
        r[0]
        for r in ledger._db.execute(
            "SELECT u.unit_id FROM unit_steps s JOIN units u USING (uid) WHERE s.step_idx = ?",
            (step_idx,),
        )
    }


def test_a_clean_run_verifies(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(50))
    pass_step(ledger, 0)
    c = ledger.claim_pending(1, 10)
    ledger.record_failure(c[0].uid, 1, failed_attempt(), terminal=True)
    report = ledger.verify()
    assert report.ok
    walk, classify, judge = report.steps
    assert (walk.expected, walk.valid) == (50, 50)
    assert (classify.expected, classify.failed, classify.in_flight, classify.pending) == (
        50,
        1,
        9,
        40,
    )
    assert (judge.expected, judge.pending) == (0, 0)
    assert ledger.find_missing() == {}


def test_find_and_repair_all_5000_missing_units(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(5_000))
    pass_step(ledger, 0)
    tamper(ledger, "DELETE FROM unit_steps WHERE step_idx = 1")  # silent attrition

    missing = ledger.find_missing()
    assert list(missing) == [1]
    assert missing[1] == [f"u{i:05d}" for i in range(5_000)]  # all of them, in order
    assert ledger.verify().steps[1].missing == missing[1]

    assert ledger.repair_missing() == 5_000
    assert ledger.find_missing() == {}
    assert {s: n for s, n in ledger.counts()[1].items() if n} == {PENDING: 5_000}
    assert ledger.repair_missing() == 0  # idempotent
    assert ledger.verify().ok


def test_verify_lists_every_missing_id_past_200(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(1_000))
    pass_step(ledger, 0)
    pass_step(ledger, 1)
    tamper(ledger, "DELETE FROM unit_steps WHERE step_idx = 2 AND uid % 3 = 0")
    expected_missing = sorted(set(units_ids(1_000)) - ids_at(ledger, 2))
    assert len(expected_missing) == 333

    judge = ledger.verify().steps[2]
    assert judge.missing == expected_missing
    assert judge.expected == 1_000 and judge.pending == 667
    assert not judge.ok
    exported = json.loads(json.dumps(ledger.verify().to_dict()))
    assert len(exported["steps"][2]["missing"]) == 333 and exported["ok"] is False


def test_missing_units_of_the_first_step_are_found(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(300))
    tamper(ledger, "DELETE FROM unit_steps WHERE step_idx = 0 AND uid > 50")
    assert len(ledger.find_missing()[0]) == 250
    assert ledger.repair_missing() == 250
    assert ledger.counts()[0][PENDING] == 300


def test_a_row_for_a_unit_that_failed_upstream_is_orphaned(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(300))
    pass_step(ledger, 0)
    claimed = ledger.claim_pending(1, 300)
    for c in claimed:
        ledger.record_failure(c.uid, 1, failed_attempt(), terminal=False)
    # a buggy retry path left step-2 rows behind for units that are failed at step 1
    tamper(
        ledger,
        "INSERT INTO unit_steps(uid, step_idx, state, updated_at) "
        "SELECT uid, 2, 'pending', 'x' FROM unit_steps WHERE step_idx = 1",
    )
    judge = ledger.verify().steps[2]
    assert judge.orphaned == units_ids(300)  # all 300, not a sample
    assert (judge.expected, judge.missing) == (0, [])


def test_orphans_at_consecutive_steps_are_all_reported(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(10))
    pass_step(ledger, 0, 6)  # u00006..u00009 stay pending at step 0
    pass_step(ledger, 1, 6)
    stray = [ledger.uid_of(f"u{i:05d}") for i in (7, 8)]
    for uid in stray:  # rows at steps 1 and 2 for units that never passed step 0
        tamper(
            ledger,
            "INSERT INTO unit_steps(uid, step_idx, state, output_json, updated_at) "
            "VALUES (?, 1, 'valid', '{}', 'x')",
            (uid,),
        )
    tamper(
        ledger,
        "INSERT INTO unit_steps(uid, step_idx, state, updated_at) VALUES (?, 2, 'pending', 'x')",
        (stray[0],),
    )
    walk, classify, judge = ledger.verify().steps
    assert walk.ok
    assert (classify.orphaned, classify.expected) == (["u00007", "u00008"], 6)
    # u00008 is valid at step 1 but orphaned there, so it is expected (and missing) at step 2
    assert (judge.orphaned, judge.missing) == ([], ["u00008"])
    assert judge.expected == 8


def test_fan_out_children_are_expected_and_parents_are_not(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(steps=EXPAND_JUDGE)
    ledger.add_units([("p1", {}), ("p2", {}), ("p3", {})])
    p1, p2, p3 = ledger.claim_pending(0, 3)
    ledger.add_children(p1.uid, 0, [("p1__fan000", {}), ("p1__fan001", {})])
    ledger.add_children(p2.uid, 0, [])  # a parent may have no children
    ledger.record_failure(p3.uid, 0, failed_attempt("expression"), terminal=True)

    expand, judge = ledger.verify().steps
    assert (expand.expected, expand.valid, expand.failed) == (3, 2, 1)
    assert (judge.expected, judge.pending, judge.missing, judge.orphaned) == (2, 2, [], [])

    tamper(
        ledger,
        "DELETE FROM unit_steps WHERE step_idx = 1 AND uid = ?",
        (ledger.uid_of("p1__fan001"),),
    )
    tamper(
        ledger,
        "INSERT INTO unit_steps(uid, step_idx, state, updated_at) VALUES (?, 1, 'pending', 'x')",
        (p1.uid,),
    )
    judge = ledger.verify().steps[1]
    assert (judge.missing, judge.orphaned, judge.expected) == (["p1__fan001"], ["p1"], 2)
    assert ledger.find_missing() == {1: ["p1__fan001"]}


def test_a_unit_in_two_live_batches_is_duplicated(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(3))
    pass_step(ledger, 0)
    claimed = ledger.claim_pending(1, 3)
    uids = [c.uid for c in claimed]
    ledger.create_batch_intent("b1", 1, provider="p", model="m", uids=uids, content_hash="h")
    tamper(
        ledger,
        "INSERT INTO batches(local_id, step_idx, provider, model, state, n_units, content_hash,"
        " created_at) VALUES ('b2', 1, 'p', 'm', 'submitted', 1, 'h', 'now')",
    )
    tamper(
        ledger,
        "INSERT INTO batch_units(batch_id, uid) SELECT id, ? FROM batches WHERE local_id = 'b2'",
        (uids[1],),
    )
    assert ledger.verify().steps[1].duplicated == ["u00001"]


def units_ids(n: int) -> list[str]:
    return [unit_id for unit_id, _ in units(n)]
