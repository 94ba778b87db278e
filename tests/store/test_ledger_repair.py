"""repair takes up a unit's attempt history; verify sees what repair and resume need to know:
attempt counters behind their attempts, in-flight units with no runner, damaged stored values;
every change of results moves the ledger's results version."""

from __future__ import annotations

import pytest

from octopipe.core.states import UnitStepState
from octopipe.errors import CorruptValue, StoreError
from octopipe.store.ledger import Ledger
from support.ledger import MakeLedger, failed_attempt, pass_step, tamper, units

CLASSIFY = 1


def _fail_twice(ledger: Ledger, unit_id: str) -> int:
    """Two failed attempts of ``unit_id`` at classify (the second one terminal)."""
    uid = ledger.uid_of(unit_id)
    for terminal in (False, True):
        claimed = [c for c in ledger.claim_pending(CLASSIFY, 100) if c.uid == uid]
        assert claimed, unit_id
        ledger.record_failure(uid, CLASSIFY, failed_attempt(), terminal=terminal)
        ledger.release_in_flight()
        if not terminal:
            ledger.requeue_failed(CLASSIFY, reset_budget=False)
    return uid


def _row(ledger: Ledger, uid: int) -> tuple[str, int, int, int | None]:
    return ledger._db.execute(
        """SELECT state, attempts, attempts_base, last_attempt_id FROM unit_steps
           WHERE step_idx = ? AND uid = ?""",
        (CLASSIFY, uid),
    ).fetchone()


def test_a_repaired_row_takes_up_its_attempts_and_the_next_attempt_is_new(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    ledger.add_units(units(3))
    pass_step(ledger, 0)
    uid = _fail_twice(ledger, "u00001")
    last_id = ledger.attempts_for("u00001", CLASSIFY)[-1].id
    tamper(ledger, "DELETE FROM unit_steps WHERE step_idx = 1 AND uid = ?", (uid,))

    assert ledger.repair_missing() == 1
    # counter at the highest stored attempt, a fresh budget (a requeue), linked to its history
    assert _row(ledger, uid) == ("pending", 2, 2, last_id)
    claimed = {c.uid: c for c in ledger.claim_pending(CLASSIFY, 10)}
    assert (claimed[uid].attempt_no, claimed[uid].budget_used) == (3, 0)
    ledger.record_failure(uid, CLASSIFY, failed_attempt("rules"), terminal=True)
    assert [a.attempt_no for a in ledger.attempts_for("u00001", CLASSIFY)] == [1, 2, 3]
    assert ledger.verify().ok


def test_a_counter_behind_its_attempts_is_reported_and_repaired(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(4))
    pass_step(ledger, 0)
    uid = _fail_twice(ledger, "u00002")
    # what the old repair left: a row recreated from nothing beside two attempt rows
    tamper(
        ledger,
        "UPDATE unit_steps SET state = 'pending', attempts = 0, attempts_base = 0 "
        "WHERE step_idx = 1 AND uid = ?",
        (uid,),
    )
    report = ledger.verify()
    assert not report.ok
    assert report.steps[CLASSIFY].miscounted == ["u00002"]
    assert [s.miscounted for s in report.steps] == [[], ["u00002"], []]
    # an attempt recorded now would reuse number 1: refused, naming the unit and the cure
    with ledger.transaction():
        (claimed,) = [c for c in ledger.claim_pending(CLASSIFY, 10) if c.uid == uid]
        with pytest.raises(StoreError) as info:
            ledger.record_failure(uid, CLASSIFY, failed_attempt(), terminal=False)
        ledger.release_in_flight()
    assert claimed.attempt_no == 1
    assert "unit 'u00002' at step 'classify': attempt 1 is already stored" in str(info.value)
    assert "`octopipe repair RUN` raises it" in str(info.value)

    done = ledger.repair()
    assert (done.missing, done.recounted) == (0, 1)
    assert _row(ledger, uid)[:3] == ("pending", 2, 2)  # budget used unchanged: still 0
    assert ledger.verify().ok
    claimed = {c.uid: c for c in ledger.claim_pending(CLASSIFY, 10)}
    assert (claimed[uid].attempt_no, claimed[uid].budget_used) == (3, 0)


def test_in_flight_units_without_a_runner_are_stranded(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(5))
    pass_step(ledger, 0)
    claimed = ledger.claim_pending(CLASSIFY, 3)
    in_batch = [claimed[0].uid]
    ledger.create_batch_intent(
        "b1", CLASSIFY, provider="p", model="m", uids=in_batch, content_hash="h"
    )
    assert ledger.verify().ok  # a live runner may be calling them
    report = ledger.verify(runner_live=False)
    assert not report.ok
    # the unit held by an open batch is waiting for it, not stranded
    assert report.steps[CLASSIFY].stranded == ["u00001", "u00002"]
    assert report.to_dict()["steps"][CLASSIFY]["stranded"] == ["u00001", "u00002"]


def test_corrupt_stored_values_are_named_by_verify_and_by_reads(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(4))
    pass_step(ledger, 0)
    uid1, uid3 = ledger.uid_of("u00001"), ledger.uid_of("u00003")
    tamper(
        ledger,
        "UPDATE unit_steps SET output_json = '{\"walk\": 1' WHERE step_idx = 0 AND uid = ?",
        (uid1,),
    )
    with pytest.raises(CorruptValue) as info:
        list(ledger.iter_valid(0))
    message = str(info.value)
    assert message.startswith(f"run ledger {ledger.path}: unit 'u00001' at step 'walk': ")
    assert "its stored output cannot be read (not valid JSON" in message

    tamper(ledger, "UPDATE units SET fields_json = '[1, 2]' WHERE uid = ?", (uid3,))
    tamper(ledger, "UPDATE run SET options_json = 'nope'")
    with pytest.raises(CorruptValue, match="unit 'u00003': its stored fields cannot be read"):
        ledger.claim_pending(CLASSIFY, 10)

    report = ledger.verify()
    assert [s.corrupt for s in report.steps] == [["u00001", "u00003"], [], []]
    assert report.problems == ["the run's options are not valid JSON"]
    assert not report.ok
    assert ledger.verify(deep=False).ok  # the quick check reads no stored value


def test_every_change_of_results_moves_the_results_version(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    seen = [ledger.results_version()]

    def moved() -> bool:
        seen.append(ledger.results_version())
        return seen[-1] > seen[-2]

    ledger.add_units(units(3))
    assert not moved()  # pending units change no export
    claimed = ledger.claim_pending(0, 3)
    ledger.release_in_flight()
    assert not moved()
    pass_step(ledger, 0)
    assert moved()
    c = ledger.claim_pending(CLASSIFY, 1)[0]
    ledger.record_failure(c.uid, CLASSIFY, failed_attempt(), terminal=True)
    assert moved()
    ledger.record_revalidation(c.uid, CLASSIFY, delta=None, stage="rules", errors=[])
    assert moved()
    assert ledger.requeue_failed(CLASSIFY) == 1
    assert moved()
    tamper(ledger, "DELETE FROM unit_steps WHERE step_idx = 1 AND uid = ?", (c.uid,))
    assert ledger.repair_missing() == 1
    assert moved()
    assert ledger.repair_missing() == 0
    assert not moved()
    assert len(claimed) == 3 and ledger.counts()[1][UnitStepState.PENDING] == 3
