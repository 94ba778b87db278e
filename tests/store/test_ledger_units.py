"""Units through their steps: adding, claiming, succeeding, failing, retrying, revalidating."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopipe.core.states import UnitStepState
from octopipe.errors import IllegalTransition, StoreError
from octopipe.store.ledger import Ledger
from octopipe.store.records import Failure, StepDef, Success
from support.ledger import (
    EXPAND_JUDGE,
    MakeLedger,
    failed_attempt,
    pass_step,
    run_meta,
    units,
    valid_attempt,
)

PENDING, IN_FLIGHT, VALID = UnitStepState.PENDING, UnitStepState.IN_FLIGHT, UnitStepState.VALID
FAILED, EXHAUSTED = UnitStepState.FAILED, UnitStepState.EXHAUSTED


def state_counts(ledger: Ledger, step_idx: int) -> dict[UnitStepState, int]:
    return {s: n for s, n in ledger.counts()[step_idx].items() if n}


# --- adding -------------------------------------------------------------------------------------


def test_added_units_are_pending_at_their_origin_step(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    assert ledger.add_units(units(12_345), batch=1_000) == 12_345
    assert state_counts(ledger, 0) == {PENDING: 12_345}
    assert state_counts(ledger, 1) == {}


def test_add_units_streams_from_a_generator(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    generated = ((f"g{i}", {"i": i}) for i in range(2_500))
    assert ledger.add_units(generated, batch=1_000) == 2_500


def test_a_duplicate_unit_id_is_named(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(10))
    with pytest.raises(StoreError, match="duplicate unit id 'u00007'"):
        ledger.add_units([("new", {}), ("u00007", {"i": 7})])
    assert sum(ledger.counts()[0].values()) == 10  # the chunk was rolled back
    with pytest.raises(StoreError, match="no unit 'new'"):
        ledger.uid_of("new")


def test_a_duplicate_within_one_chunk_is_named(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    with pytest.raises(StoreError, match="duplicate unit id 'a'"):
        ledger.add_units([("a", {}), ("b", {}), ("a", {})])


def test_add_units_inside_a_transaction_is_all_or_nothing(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    with pytest.raises(StoreError), ledger.transaction():
        ledger.add_units([*units(2_000), ("u00001", {})], batch=500)
    assert sum(ledger.counts()[0].values()) == 0


def test_fields_that_are_not_json_are_refused_with_the_unit_named(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    with pytest.raises(StoreError, match="u1"):
        ledger.add_units([("u1", {"x": math.nan})])
    with pytest.raises(StoreError, match="u2"):
        ledger.add_units([("u2", {"x": object()})])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=40), st.dictionaries(st.text(), json_values), max_size=20
    )
)
def test_any_ids_and_json_fields_round_trip(by_id: dict[str, dict[str, Any]]) -> None:
    with Ledger.in_memory(run_meta(), [StepDef("only")]) as ledger:
        ledger.add_units(by_id.items(), batch=7)
        claimed = ledger.claim_pending(0, len(by_id) + 1)
        assert {c.unit_id: c.record for c in claimed} == by_id


# --- claiming and recording ---------------------------------------------------------------------


def test_claim_moves_pending_to_in_flight_once(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(10))
    first = ledger.claim_pending(0, 4)
    second = ledger.claim_pending(0, 100)
    assert [c.unit_id for c in first] == ["u00000", "u00001", "u00002", "u00003"]
    assert len(second) == 6 and not {c.uid for c in first} & {c.uid for c in second}
    assert state_counts(ledger, 0) == {IN_FLIGHT: 10}
    assert ledger.claim_pending(0, 100) == []


def test_claim_units_moves_exactly_the_named_pending_units(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(5))
    uids = [c.uid for c in ledger.peek_pending(0, 5)]
    ledger.claim_units(0, [uids[1], uids[3]])
    assert state_counts(ledger, 0) == {PENDING: 3, IN_FLIGHT: 2}
    assert [c.uid for c in ledger.claim_pending(0, 10)] == [uids[0], uids[2], uids[4]]


def test_claim_units_changes_nothing_unless_every_unit_is_pending(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    ledger.add_units(units(3))
    uids = [c.uid for c in ledger.peek_pending(0, 3)]
    ledger.claim_units(0, [uids[0]])
    with pytest.raises(StoreError, match="1 of 2 units were no longer pending at step 0"):
        ledger.claim_units(0, [uids[0], uids[1]])
    assert state_counts(ledger, 0) == {PENDING: 2, IN_FLIGHT: 1}
    with pytest.raises(ValueError, match="appears twice"):
        ledger.claim_units(0, [uids[2], uids[2]])


def test_successes_can_enter_the_next_step_already_claimed(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(3))
    claimed = ledger.claim_pending(0, 3)
    ledger.record_successes(0, [Success(c.uid, {"x": 1}) for c in claimed], claim_next=True)
    assert state_counts(ledger, 1) == {IN_FLIGHT: 3}
    assert ledger.claim_pending(1, 10) == []
    ledger.record_successes(1, [Success(c.uid, {"y": 2}, valid_attempt()) for c in claimed])
    assert state_counts(ledger, 1) == {VALID: 3} and state_counts(ledger, 2) == {PENDING: 3}
    last = ledger.claim_pending(2, 3)
    with pytest.raises(ValueError, match="last step"):
        ledger.record_successes(
            2, [Success(c.uid, {}, valid_attempt()) for c in last], claim_next=True
        )
    assert state_counts(ledger, 2) == {IN_FLIGHT: 3}


def test_a_claimed_record_is_the_fields_plus_earlier_deltas(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units([("a", {"seed": 1, "name": "x"})])
    [c] = ledger.claim_pending(0, 1)
    assert ledger.record_success(c.uid, 0, {"pos": 3, "name": "y"}) == 1
    [c] = ledger.claim_pending(1, 1)
    assert c.record == {"seed": 1, "name": "y", "pos": 3}
    ledger.record_success(c.uid, 1, {"label": "L"}, valid_attempt())
    [c] = ledger.claim_pending(2, 1)
    assert c.record == {"seed": 1, "name": "y", "pos": 3, "label": "L"}
    assert ledger.record_success(c.uid, 2, {"score": 9}, valid_attempt()) is None
    assert dict(ledger.iter_valid(2)) == {
        "a": {"seed": 1, "name": "y", "pos": 3, "label": "L", "score": 9}
    }


def test_success_stores_only_the_delta(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units([("a", {"big": "x" * 1_000})])
    [c] = ledger.claim_pending(0, 1)
    ledger.record_success(c.uid, 0, {"pos": 1})
    row = ledger._db.execute("SELECT output_json FROM unit_steps WHERE step_idx = 0").fetchone()
    assert row[0] == '{"pos":1}'


def test_success_is_illegal_unless_in_flight(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(1))
    uid = ledger.uid_of("u00000")
    with pytest.raises(IllegalTransition, match="'pending' on 'succeed'"):
        ledger.record_success(uid, 0, {})
    pass_step(ledger, 0)
    with pytest.raises(IllegalTransition, match="'valid' on 'succeed'"):
        ledger.record_success(uid, 0, {})
    assert state_counts(ledger, 1) == {PENDING: 1}  # nothing was written twice


def test_a_bulk_change_with_one_illegal_unit_writes_nothing(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(3))
    claimed = ledger.claim_pending(0, 2)  # u00002 stays pending
    items = [Success(c.uid, {"x": 1}) for c in claimed] + [
        Success(ledger.uid_of("u00002"), {"x": 1})
    ]
    with pytest.raises(IllegalTransition):
        ledger.record_successes(0, items)
    assert state_counts(ledger, 0) == {IN_FLIGHT: 2, PENDING: 1}
    assert state_counts(ledger, 1) == {}


def test_attempts_are_numbered_and_kept(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(1))
    pass_step(ledger, 0)
    [c] = ledger.claim_pending(1, 1)
    assert (c.attempt_no, c.budget_used) == (1, 0)
    assert ledger.record_failure(c.uid, 1, failed_attempt("schema"), terminal=False) is FAILED
    assert ledger.requeue_failed(1, include_exhausted=False, reset_budget=False) == 1
    [c] = ledger.claim_pending(1, 1)
    assert (c.attempt_no, c.budget_used) == (2, 1)
    ledger.record_success(c.uid, 1, {"ok": True}, valid_attempt(cost_usd=0.25, input_tokens=7))
    history = ledger.attempts_for("u00000", 1)
    assert [(a.attempt_no, a.outcome, a.stage) for a in history] == [
        (1, "failed", "schema"),
        (2, "valid", None),
    ]
    assert history[1].cost_usd == 0.25 and history[1].input_tokens == 7


def test_terminal_failure_exhausts_and_render_failures_skip_the_claim(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    ledger.add_units(units(2))
    pass_step(ledger, 0)
    [c] = ledger.claim_pending(1, 1)
    assert ledger.record_failure(c.uid, 1, failed_attempt("rules"), terminal=True) is EXHAUSTED
    still_pending = ledger.uid_of("u00001")
    render = failed_attempt("render", response=None, mode="local")
    assert ledger.record_failure(still_pending, 1, render, terminal=True) is EXHAUSTED
    with pytest.raises(IllegalTransition):
        ledger.record_failure(still_pending, 1, render, terminal=False)


def test_record_failures_in_bulk(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(4))
    pass_step(ledger, 0)
    claimed = ledger.claim_pending(1, 4)
    states = ledger.record_failures(
        1, [Failure(c.uid, failed_attempt(), terminal=i % 2 == 0) for i, c in enumerate(claimed)]
    )
    assert states == [EXHAUSTED, FAILED, EXHAUSTED, FAILED]


def test_a_unit_without_a_row_at_the_step_is_a_store_error(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(1))
    with pytest.raises(StoreError, match="no row at step 2"):
        ledger.record_failure(ledger.uid_of("u00000"), 2, failed_attempt(), terminal=True)


# --- release, retry, revalidate -----------------------------------------------------------------


def test_release_in_flight_returns_claims_without_losing_or_duplicating(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    ledger.add_units(units(100))
    claimed = ledger.claim_pending(0, 60)
    ledger.record_successes(0, [Success(c.uid, {"x": 1}) for c in claimed[:20]])
    # the runner dies here with 40 units in flight; the next one starts:
    assert ledger.release_in_flight() == 40
    assert state_counts(ledger, 0) == {VALID: 20, PENDING: 80}
    while pass_step(ledger, 0, 30):
        pass
    assert state_counts(ledger, 0) == {VALID: 100}
    assert state_counts(ledger, 1) == {PENDING: 100}
    assert ledger.verify().ok
    assert [e.tag for e in ledger.events()].count("RECOVER") == 1


def test_requeue_failed_moves_only_the_selected_failures(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(6))
    pass_step(ledger, 0)
    c = ledger.claim_pending(1, 6)
    ledger.record_failure(c[0].uid, 1, failed_attempt("parse"), terminal=False)
    ledger.record_failure(c[1].uid, 1, failed_attempt("schema"), terminal=False)
    ledger.record_failure(c[2].uid, 1, failed_attempt("schema"), terminal=True)
    ledger.record_successes(1, [Success(x.uid, {"v": 1}) for x in c[3:]])

    assert ledger.requeue_failed(1, stage="schema", include_exhausted=False) == 1
    assert ledger.unit_states("u00001")[1] is PENDING
    assert ledger.requeue_failed(unit_ids=["u00002", "u00003"]) == 1  # u00003 is valid
    assert ledger.unit_states("u00002")[1] is PENDING
    assert ledger.requeue_failed() == 1  # u00000
    assert state_counts(ledger, 1) == {PENDING: 3, VALID: 3}


def test_a_manual_retry_gives_a_fresh_budget(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(1))
    pass_step(ledger, 0)
    for _ in range(3):
        [c] = ledger.claim_pending(1, 1)
        ledger.record_failure(c.uid, 1, failed_attempt(), terminal=False)
        ledger.requeue_failed(1, include_exhausted=False, reset_budget=False)
    [c] = ledger.claim_pending(1, 1)
    assert (c.attempt_no, c.budget_used) == (4, 3)
    ledger.record_failure(c.uid, 1, failed_attempt(), terminal=True)
    assert ledger.requeue_failed(1) == 1
    [c] = ledger.claim_pending(1, 1)
    assert (c.attempt_no, c.budget_used) == (5, 0)


def test_an_unparseable_response_survives_revalidation_and_requeue(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    ledger.add_units(units(1))
    pass_step(ledger, 0)
    [c] = ledger.claim_pending(1, 1)
    raw = "Sorry, I cannot answer that {{{"
    ledger.record_failure(c.uid, 1, failed_attempt("parse", response=raw), terminal=True)

    # revalidation with new rules still cannot parse it: the record stays, raw kept
    ledger.record_revalidation(
        c.uid, 1, delta=None, stage="parse", errors=[{"message": "no JSON object"}]
    )
    [row] = list(ledger.iter_failures(1))
    assert (row.unit_id, row.state, row.stage, row.raw_response) == (
        "u00000",
        EXHAUSTED,
        "parse",
        raw,
    )
    assert row.errors == [{"message": "no JSON object"}]
    assert row.input == {"i": 0, "walk": 0}

    # retried: the failure leaves the failure list but its history keeps the raw answer
    ledger.requeue_failed(1)
    assert list(ledger.iter_failures(1)) == []
    [c] = ledger.claim_pending(1, 1)
    ledger.record_failure(c.uid, 1, failed_attempt("schema", response='{"a": 1}'), terminal=False)
    assert [a.response for a in ledger.attempts_for("u00000", 1)] == [raw, '{"a": 1}']
    assert [r.raw_response for r in ledger.iter_failures(1)] == ['{"a": 1}']


def test_revalidation_pass_makes_the_unit_valid_and_enters_the_next_step(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    ledger.add_units(units(1))
    pass_step(ledger, 0)
    [c] = ledger.claim_pending(1, 1)
    ledger.record_failure(c.uid, 1, failed_attempt("rules", response='{"n": "3"}'), terminal=True)
    assert ledger.record_revalidation(c.uid, 1, delta={"n": 3}) is VALID
    assert ledger.unit_states("u00000") == {0: VALID, 1: VALID, 2: PENDING}
    [c] = ledger.claim_pending(2, 1)
    assert c.record == {"i": 0, "walk": 0, "n": 3}
    with pytest.raises(IllegalTransition):
        ledger.record_revalidation(c.uid, 1, delta={"n": 4})  # valid is final


# --- fan-out ------------------------------------------------------------------------------------


def test_fan_out_makes_the_parent_valid_and_children_pending_next(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger(steps=EXPAND_JUDGE)
    ledger.add_units([("deck", {"cards": ["a", "b", "c"]})])
    [parent] = ledger.claim_pending(0, 1)
    kids = [(f"deck__fan{i:03d}", {"card": card}) for i, card in enumerate(parent.record["cards"])]
    child_uids = ledger.add_children(parent.uid, 0, kids)
    assert len(child_uids) == 3
    assert ledger.unit_states("deck") == {0: VALID}
    assert ledger.unit_states("deck__fan001") == {1: PENDING}
    claimed = ledger.claim_pending(1, 10)
    assert [c.record for c in claimed] == [{"card": "a"}, {"card": "b"}, {"card": "c"}]
    assert ledger.verify().ok


def test_fan_out_is_atomic(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(steps=EXPAND_JUDGE)
    ledger.add_units([("deck", {}), ("deck__fan000", {})])
    [parent] = ledger.claim_pending(0, 1)
    with pytest.raises(StoreError, match="duplicate unit id 'deck__fan000'"):
        ledger.add_children(parent.uid, 0, [("deck__fan000", {})])
    assert ledger.unit_states("deck") == {0: IN_FLIGHT}


def test_steps_of_the_wrong_kind_are_refused(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(steps=EXPAND_JUDGE)
    ledger.add_units(units(1))
    [c] = ledger.claim_pending(0, 1)
    with pytest.raises(ValueError, match="use add_children"):
        ledger.record_success(c.uid, 0, {})
    with pytest.raises(ValueError, match="not fan_out"):
        ledger.add_children(c.uid, 1, [])
    with pytest.raises(ValueError, match="not a step"):
        ledger.claim_pending(7, 1)
