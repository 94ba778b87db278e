"""Transactions, run status, blobs, events, commands, batches and money in the ledger."""

from __future__ import annotations

import pytest

from octopipe.core.commands import Pause, Retry
from octopipe.core.states import (
    BatchEvent,
    BatchState,
    CommandEvent,
    CommandState,
    RunEvent,
    RunStatus,
    UnitStepState,
)
from octopipe.errors import IllegalTransition, StoreError
from octopipe.store.ledger import Ledger
from octopipe.store.records import Failure, Success
from support.commands import EXAMPLES
from support.ledger import MakeLedger, failed_attempt, pass_step, tamper, units, valid_attempt

# --- transactions -------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_an_exception_inside_a_transaction_leaves_no_partial_writes(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    ledger.add_units(units(5))
    before = ledger.counts()
    with pytest.raises(Boom), ledger.transaction():
        ledger.add_units(units(5, prefix="x"))
        pass_step(ledger, 0)
        ledger.log_event("info", "TEST", "inside")
        ledger.put_blob("inside")
        ledger.set_run_status(RunEvent.START)
        raise Boom
    assert ledger.counts() == before
    assert ledger.events() == []
    assert ledger.run_info().status is RunStatus.PENDING
    assert ledger._db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 0


def test_a_failed_inner_change_rolls_back_alone(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(2))
    with ledger.transaction():
        ledger.log_event("info", "OUTER", "kept")
        with pytest.raises(StoreError):
            ledger.add_units([("new", {}), ("u00000", {})])  # duplicate: this call fails
        [c] = ledger.claim_pending(0, 1)
        ledger.record_success(c.uid, 0, {"x": 1})
    assert [e.tag for e in ledger.events()] == ["OUTER"]
    assert sum(ledger.counts()[0].values()) == 2
    assert ledger.counts()[0][UnitStepState.VALID] == 1


def test_a_committed_change_survives_reopening(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    if ledger.path == ":memory:":
        pytest.skip("a file property")
    ledger.add_units(units(3))
    pass_step(ledger, 0, 2)
    path = ledger.path
    ledger.close()
    with Ledger.open(path) as again:
        assert again.counts()[0][UnitStepState.VALID] == 2


# --- run status ---------------------------------------------------------------------------------


def test_run_status_follows_the_table_and_records_times(make_ledger: MakeLedger) -> None:
    ticks = iter(f"2030-01-01T00:00:{i:02d}.000Z" for i in range(60))
    ledger = make_ledger()
    ledger._now = lambda: next(ticks)
    assert ledger.set_run_status(RunEvent.START) is RunStatus.RUNNING
    started = ledger.run_info().started_at
    assert ledger.set_run_status(RunEvent.PAUSE, "cost cap $5.00 reached") is RunStatus.PAUSED
    info = ledger.run_info()
    assert (info.status_reason, info.finished_at) == ("cost cap $5.00 reached", None)
    ledger.set_run_status(RunEvent.START)
    assert ledger.run_info().started_at == started  # the first start is kept
    ledger.set_run_status(RunEvent.FINISH)
    assert ledger.run_info().finished_at is not None
    ledger.set_run_status(RunEvent.REOPEN, "retry")
    assert ledger.run_info().finished_at is None
    with pytest.raises(IllegalTransition, match="'running' on 'reopen'"):
        ledger.set_run_status(RunEvent.REOPEN)
    assert [e.tag for e in ledger.events()].count("STATE") == 5


def test_a_paused_run_cannot_finish_and_a_killed_run_cannot_restart(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    ledger.set_run_status(RunEvent.START)
    ledger.set_run_status(RunEvent.PAUSE)
    with pytest.raises(IllegalTransition):
        ledger.set_run_status(RunEvent.FINISH)
    ledger.set_run_status(RunEvent.KILL, "user")
    with pytest.raises(IllegalTransition):
        ledger.set_run_status(RunEvent.START)
    assert ledger.run_info().status is RunStatus.KILLED


def test_update_run_changes_only_what_is_given(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(provider="openai", model="a")
    ledger.update_run(mode="batch", display_name="Nice name")
    info = ledger.run_info()
    assert (info.mode, info.display_name, info.provider, info.model) == (
        "batch",
        "Nice name",
        "openai",
        "a",
    )
    with pytest.raises(ValueError):
        ledger.update_run(mode="turbo")


# --- blobs, events, commands --------------------------------------------------------------------


def test_blobs_are_stored_once_and_read_back(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    text = "Ünïcode prompt " + "lorem ipsum " * 500
    first, second = ledger.put_blob(text), ledger.put_blob(text)
    assert first == second and ledger.get_blob(first) == text
    assert ledger.put_blob(text + "!") != first
    size = ledger._db.execute("SELECT length(data) FROM blobs WHERE id = ?", (first,)).fetchone()
    assert size[0] < len(text) / 10  # compressed
    with pytest.raises(StoreError, match="no blob"):
        ledger.get_blob(10_000)


def test_identical_responses_share_one_blob(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(20))
    pass_step(ledger, 0)
    claimed = ledger.claim_pending(1, 20)
    answer = '{"label": "yes"}' * 100
    ledger.record_successes(1, [Success(c.uid, {}, valid_attempt(answer)) for c in claimed])
    assert ledger._db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 1
    assert {a.response for a in ledger.attempts_for("u00007")} == {answer}


def test_events_are_read_in_order_after_an_id(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    first = ledger.log_event("info", "INIT", "created", {"units": 3})
    ledger.log_event("warning", "RATE_LIMIT", "429 from provider")
    assert [(e.tag, e.data) for e in ledger.events()] == [
        ("INIT", {"units": 3}),
        ("RATE_LIMIT", None),
    ]
    assert [e.message for e in ledger.events(after_id=first)] == ["429 from provider"]
    with pytest.raises(ValueError):
        ledger.log_event("loud", "X", "y")  # type: ignore[arg-type]


def test_commands_queue_and_are_applied_once(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    pause = ledger.enqueue_command(Pause("user"))
    retry = ledger.enqueue_command(Retry(step_idx=1))
    assert [(c.kind, c.command, c.state) for c in ledger.pending_commands()] == [
        ("pause", Pause("user"), CommandState.PENDING),
        ("retry", Retry(step_idx=1), CommandState.PENDING),
    ]
    ledger.mark_command(pause, CommandEvent.APPLY, "paused")
    ledger.mark_command(retry, CommandEvent.REJECT, "run is paused")
    assert ledger.pending_commands() == []
    with pytest.raises(IllegalTransition):
        ledger.mark_command(pause, CommandEvent.APPLY)
    with pytest.raises(StoreError, match="no command 99"):
        ledger.mark_command(99, CommandEvent.APPLY)


def test_every_command_reads_back_from_the_queue_as_it_was_queued(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    ids = [ledger.enqueue_command(command) for command in EXAMPLES]
    rows = ledger.pending_commands()
    assert [(r.id, r.kind, r.command, r.problem) for r in rows] == [
        (i, c.kind, c, None) for i, c in zip(ids, EXAMPLES, strict=True)
    ]


def test_a_queued_row_that_is_no_command_comes_back_with_the_reason(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    good = ledger.enqueue_command(Pause())
    rows = [
        ("explode", "{}"),
        ("rename", '{"display_name": 5}'),
        ("retry", "{not json"),
    ]
    for kind, args in rows:
        tamper(
            ledger,
            "INSERT INTO commands(ts, kind, args_json, state) VALUES ('t', ?, ?, 'pending')",
            (kind, args),
        )
    read = ledger.pending_commands()
    assert [(r.kind, r.command) for r in read] == [
        ("pause", Pause()),
        ("explode", None),
        ("rename", None),
        ("retry", None),
    ]
    assert read[0].id == good and read[0].problem is None
    assert read[1].problem == "unknown command 'explode'"
    assert read[2].problem == "command 'rename': display_name must be a string, not 5"
    assert read[3].problem is not None
    assert read[3].problem.startswith(f"the argument list of command {read[3].id} is corrupt")


def test_a_second_process_can_queue_a_command_while_the_runner_has_it_open(
    make_ledger: MakeLedger,
) -> None:
    runner = make_ledger()
    if runner.path == ":memory:":
        pytest.skip("needs a file")
    with Ledger.open(runner.path) as cli:
        cli.enqueue_command(Pause())
    assert [c.kind for c in runner.pending_commands()] == ["pause"]


# --- money --------------------------------------------------------------------------------------


def test_cost_totals_count_unknown_costs_instead_of_guessing(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(3))
    pass_step(ledger, 0)
    a, b, c = ledger.claim_pending(1, 3)
    ledger.record_success(
        a.uid, 1, {}, valid_attempt(cost_usd=0.5, input_tokens=10, output_tokens=2, cached_tokens=4)
    )
    ledger.record_success(b.uid, 1, {}, valid_attempt(cost_usd=None, input_tokens=1))
    ledger.record_failure(c.uid, 1, failed_attempt(cost_usd=0.25), terminal=False)
    totals = ledger.cost_totals()
    assert (totals.known_usd, totals.unknown_cost_attempts, totals.attempts) == (0.75, 1, 3)
    assert (totals.input_tokens, totals.output_tokens, totals.cached_tokens) == (11, 2, 4)


# --- batches ------------------------------------------------------------------------------------


def claimed_at_classify(ledger: Ledger, n: int) -> list[int]:
    ledger.add_units(units(n))
    pass_step(ledger, 0)
    return [c.uid for c in ledger.claim_pending(1, n)]


def test_a_batch_goes_from_intent_to_collected(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    uids = claimed_at_classify(ledger, 4)
    intent = ledger.create_batch_intent(
        "s1-b0001", 1, provider="openai", model="m", uids=uids, content_hash="abc", estimate_usd=1.5
    )
    assert (intent.state, intent.n_units, intent.provider_batch_id) == (BatchState.INTENT, 4, None)
    row = ledger.advance_batch("s1-b0001", BatchEvent.SUBMIT_OK, provider_batch_id="batch_xyz")
    assert (row.state, row.provider_batch_id) == (BatchState.SUBMITTED, "batch_xyz")
    assert row.submitted_at is not None
    ledger.advance_batch("s1-b0001", BatchEvent.PROVIDER_DONE, provider_status="completed")
    ledger.record_successes(
        1,
        [
            Success(u, {"v": 1}, valid_attempt(mode="batch", batch_local_id="s1-b0001"))
            for u in uids[:3]
        ],
    )
    done = ledger.advance_batch("s1-b0001", BatchEvent.COLLECT_OK, actual_usd=0.7)
    assert (done.state, done.actual_usd) == (BatchState.COLLECTED, 0.7)
    # the line the provider dropped went back to pending, with a warning
    assert ledger.counts()[1][UnitStepState.PENDING] == 1
    assert any(e.tag == "BATCH" and e.level == "warning" for e in ledger.events())
    assert ledger.attempts_for("u00000", 1)[0].batch_local_id == "s1-b0001"
    assert ledger.batch_units("s1-b0001") == uids
    assert [b.local_id for b in ledger.batches(BatchState.COLLECTED)] == ["s1-b0001"]
    assert ledger.batches(BatchState.SUBMITTED) == []


def test_units_of_a_live_batch_survive_a_restart_and_an_abandoned_intent_frees_them(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    uids = claimed_at_classify(ledger, 5)
    ledger.create_batch_intent("b1", 1, provider="p", model="m", uids=uids[:3], content_hash="h")
    # restart: only the two units outside the batch were realtime claims that died
    assert ledger.release_in_flight() == 2
    assert ledger.counts()[1][UnitStepState.IN_FLIGHT] == 3
    ledger.advance_batch("b1", BatchEvent.RECONCILE_MISSING)
    assert ledger.counts()[1][UnitStepState.PENDING] == 5


def test_a_unit_cannot_be_put_in_two_live_batches(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    uids = claimed_at_classify(ledger, 2)
    ledger.create_batch_intent("b1", 1, provider="p", model="m", uids=uids, content_hash="h")
    with pytest.raises(StoreError, match="already in a live batch"):
        ledger.create_batch_intent(
            "b2", 1, provider="p", model="m", uids=uids[:1], content_hash="h"
        )
    ledger.advance_batch("b1", BatchEvent.RECONCILE_MISSING)  # frees the units
    ledger.claim_pending(1, 2)
    with pytest.raises(StoreError, match="already exists"):
        ledger.create_batch_intent("b1", 1, provider="p", model="m", uids=uids, content_hash="h")


def test_a_batch_needs_claimed_units(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add_units(units(2))
    pass_step(ledger, 0)
    with pytest.raises(StoreError, match="not claimed"):
        ledger.create_batch_intent(
            "b1", 1, provider="p", model="m", uids=[ledger.uid_of("u00000")], content_hash="h"
        )
    assert ledger.batches() == []


def test_an_expired_batch_is_salvaged(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    uids = claimed_at_classify(ledger, 3)
    ledger.create_batch_intent("b1", 1, provider="p", model="m", uids=uids, content_hash="h")
    ledger.advance_batch("b1", BatchEvent.SUBMIT_OK, provider_batch_id="x")
    ledger.advance_batch("b1", BatchEvent.PROVIDER_EXPIRED, error="24h window passed")
    assert ledger.release_in_flight() == 0  # results may still be salvaged
    ledger.record_success(uids[0], 1, {"v": 1})
    row = ledger.advance_batch("b1", BatchEvent.SALVAGE_OK)
    assert (row.state, row.error) == (BatchState.COLLECTED, "24h window passed")
    assert ledger.counts()[1][UnitStepState.PENDING] == 2
    with pytest.raises(IllegalTransition):
        ledger.advance_batch("b1", BatchEvent.PROVIDER_DONE)


def test_batch_records_are_committed_with_full_sync_then_normal_again(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    uids = claimed_at_classify(ledger, 1)
    seen: list[int] = []
    clock = ledger._now

    def spying_clock() -> str:  # called inside the transaction
        seen.append(ledger._db.execute("PRAGMA synchronous").fetchone()[0])
        return clock()

    ledger._now = spying_clock
    ledger.create_batch_intent("b1", 1, provider="p", model="m", uids=uids, content_hash="h")
    ledger.advance_batch("b1", BatchEvent.SUBMIT_OK, provider_batch_id="x")
    ledger.log_event("info", "AFTER", "ordinary commit")
    full, normal = 2, 1
    assert seen == [full, full, normal]


def test_failed_units_of_a_live_batch_wait_for_the_batch_to_end(make_ledger: MakeLedger) -> None:
    """A unit whose line was recorded as failed while its batch is still being collected must
    not be requeued (and so claimed into another batch or a realtime call) before the batch
    ends: the batch's end would release it again from under its new holder."""
    ledger = make_ledger()
    uids = claimed_at_classify(ledger, 3)
    ledger.create_batch_intent("b1", 1, provider="p", model="m", uids=uids, content_hash="h")
    ledger.advance_batch("b1", BatchEvent.SUBMIT_OK, provider_batch_id="x")
    ledger.advance_batch("b1", BatchEvent.PROVIDER_DONE)
    ledger.record_failures(1, [Failure(uids[0], failed_attempt(), terminal=False)])
    assert ledger.requeue_failed(1, include_exhausted=False, reset_budget=False) == 0
    assert ledger.requeue_failed() == 0  # nor by the `retry` command
    assert ledger.claim_pending(1, 10) == []
    ledger.record_success(uids[1], 1, {"v": 1})
    ledger.advance_batch("b1", BatchEvent.COLLECT_OK)  # uids[2] had no line: released
    assert ledger.requeue_failed(1, include_exhausted=False, reset_budget=False) == 1
    assert sorted(u.uid for u in ledger.claim_pending(1, 10)) == sorted([uids[0], uids[2]])
