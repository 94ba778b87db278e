"""The run store's contract: what every implementation of ``store/protocol.py`` must do.

Each test runs over every implementation, reached only the way the engine reaches one
(``create_run_store`` / ``memory_run_store``) and used only through ``RunStore``. A new
implementation (a PostgreSQL store for several workers, say) adds itself to ``STORES`` and
passes these before the engine may use it. The deeper per-method tests of the SQLite store are
the other files of this folder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from octopipe.core.commands import Command, Pause
from octopipe.core.states import BatchEvent, BatchState, CommandEvent, CommandState, UnitStepState
from octopipe.errors import IllegalTransition, StoreError
from octopipe.store import (
    ReportReader,
    RunnerIdentity,
    RunReader,
    RunStore,
    create_run_store,
    memory_run_store,
)
from octopipe.store.records import Success
from support.commands import EXAMPLES
from support.ledger import WALK_CLASSIFY_JUDGE, failed_attempt, run_meta, units, valid_attempt

STORES: dict[str, Callable[[Path], RunStore]] = {
    "sqlite-file": lambda tmp: create_run_store(tmp / "ledger.db", run_meta(), WALK_CLASSIFY_JUDGE),
    "sqlite-memory": lambda tmp: memory_run_store(run_meta(), WALK_CLASSIFY_JUDGE),
}
ALICE = RunnerIdentity("a" * 32, "host-a", 101, "2026-01-01T00:00:00.000Z")
BOB = RunnerIdentity("b" * 32, "host-b", 202, "2026-01-01T00:00:01.000Z")


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    made = STORES[request.param](tmp_path)
    yield made
    made.close()


def members(protocol: type) -> dict[str, object]:
    """The methods and properties a protocol declares, its bases' included."""
    found: dict[str, object] = {}
    for cls in reversed(protocol.__mro__):
        if cls in (object, Protocol) or not getattr(cls, "_is_protocol", False):
            continue
        for name, value in vars(cls).items():
            public = not name.startswith("_") or name in ("__enter__", "__exit__")
            if public and (callable(value) or isinstance(value, property)):
                found[name] = value
    return found


def parameters(fn: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [
        (RunStore, lambda s: s),
        (RunReader, lambda s: s),
        (ReportReader, lambda s: s.report_reads()),
    ],
    ids=["RunStore", "RunReader", "ReportReader"],
)
def test_the_store_has_every_member_of_the_protocol_with_its_parameters(
    store: RunStore, protocol: type, implementation: Callable[[RunStore], object]
) -> None:
    impl = type(implementation(store))
    wanted = members(protocol)
    assert len(wanted) > 5  # the protocol was read, not an empty shell
    missing = sorted(name for name in wanted if not hasattr(impl, name))
    assert missing == []
    differ = [
        name
        for name, declared in wanted.items()
        if not isinstance(declared, property)
        and parameters(declared) != parameters(getattr(impl, name))
    ]
    assert differ == []


def test_a_failed_inner_change_rolls_back_alone_and_the_outer_one_commits(
    store: RunStore,
) -> None:
    store.add_units(units(2))
    version = store.results_version()
    with store.transaction():
        store.log_event("info", "OUTER", "kept")
        with pytest.raises(StoreError):
            store.add_units([("new", {}), ("u00000", {})])  # a duplicate: this call fails
        [claimed] = store.claim_pending(0, 1)
        store.record_success(claimed.uid, 0, {"walk": 1})
    assert [e.tag for e in store.events()] == ["OUTER"]
    assert store.counts()[0][UnitStepState.VALID] == 1
    assert sum(store.counts()[0].values()) == 2  # "new" was not added
    assert store.results_version() > version


def test_an_illegal_move_is_refused_before_anything_is_written(store: RunStore) -> None:
    store.add_units(units(1))
    uid = store.uid_of("u00000")
    before = (store.counts(), store.results_version())
    with pytest.raises(IllegalTransition):
        store.record_success(uid, 0, {"walk": 1})  # pending, never claimed
    assert (store.counts(), store.results_version()) == before
    assert store.attempts_for("u00000") == []


def test_history_is_append_only_through_retries_and_requeues(store: RunStore) -> None:
    store.add_units(units(1))
    [unit] = store.claim_pending(0, 1)
    store.record_success(unit.uid, 0, {"walk": 0})
    for _ in range(2):
        [unit] = store.claim_pending(1, 1)
        store.record_failure(unit.uid, 1, failed_attempt(), terminal=True)
        assert store.requeue_failed(step_idx=1) == 1
    [unit] = store.claim_pending(1, 1)
    store.record_successes(1, [Success(unit.uid, {"classify": "x"}, valid_attempt())])
    history = store.attempts_for("u00000", 1)
    assert [(a.attempt_no, a.outcome) for a in history] == [
        (1, "failed"),
        (2, "failed"),
        (3, "valid"),
    ]
    assert [record for _, record in store.iter_valid(1)] == [{"i": 0, "walk": 0, "classify": "x"}]
    # the same record, unmerged: the fields, then each valid step's output, with its stored text
    [(unit_id, parts)] = store.iter_valid_parts(1)
    assert unit_id == "u00000"
    assert [document for document, _ in parts] == [{"i": 0}, {"walk": 0}, {"classify": "x"}]
    assert [text for _, text in parts] == ['{"i":0}', '{"walk":0}', '{"classify":"x"}']


def test_a_unit_is_in_at_most_one_live_batch_and_never_pending_meanwhile(
    store: RunStore,
) -> None:
    store.add_units(units(3))
    store.record_successes(0, [Success(c.uid, {"walk": 1}) for c in store.claim_pending(0, 3)])
    uids = [c.uid for c in store.claim_pending(1, 3)]
    store.create_batch_intent("b1", 1, provider="p", model="m", uids=uids, content_hash="h")
    with pytest.raises(StoreError):
        store.create_batch_intent("b2", 1, provider="p", model="m", uids=uids[:1], content_hash="h")
    assert store.release_in_flight() == 0  # a live batch holds them
    assert store.counts()[1][UnitStepState.PENDING] == 0
    assert [b.state for b in store.batches()] == [BatchState.INTENT]
    assert sorted(store.batch_units("b1")) == sorted(uids)
    store.advance_batch("b1", BatchEvent.RECONCILE_MISSING)  # the intent never reached anyone
    assert store.counts()[1][UnitStepState.PENDING] == 3


def test_releasing_one_owners_claims_leaves_every_other_owners(store: RunStore) -> None:
    store.add_units(units(5))
    store.record_successes(0, [Success(c.uid, {"walk": 1}) for c in store.claim_pending(0, 5)])
    store.register_runner(ALICE)
    alice = {c.unit_id for c in store.claim_pending(1, 2)}
    store.register_runner(BOB)
    bob = {c.unit_id for c in store.claim_pending(1, 3)}
    assert store.release_in_flight(owner=ALICE.token) == 2
    assert {u for u in alice | bob if store.unit_states(u)[1] is UnitStepState.IN_FLIGHT} == bob
    assert store.release_in_flight(owner="someone else") == 0
    assert store.release_in_flight() == 3


def test_integrity_answers_give_every_id_never_a_sample(store: RunStore) -> None:
    store.add_units(units(450))
    assert store.find_missing() == {}
    assert store.verify(runner_live=False).ok
    counts = store.counts()
    assert set(counts) == {0, 1, 2}
    assert all(set(by_state) == set(UnitStepState) for by_state in counts.values())
    assert counts[0][UnitStepState.PENDING] == 450


@pytest.mark.parametrize("command", EXAMPLES, ids=repr)
def test_every_command_comes_back_from_the_queue_as_it_was_queued(
    store: RunStore, command: Command
) -> None:
    command_id = store.enqueue_command(command)
    [row] = store.pending_commands()
    assert (row.id, row.command, row.problem, row.state) == (
        command_id,
        command,
        None,
        CommandState.PENDING,
    )
    store.mark_command(command_id, CommandEvent.APPLY, "done")
    assert store.pending_commands() == []


def test_a_command_is_applied_once(store: RunStore) -> None:
    first = store.enqueue_command(Pause("one"))
    store.mark_command(first, CommandEvent.APPLY, "pausing")
    with pytest.raises((StoreError, IllegalTransition)):
        store.mark_command(first, CommandEvent.APPLY, "again")


def test_failures_are_store_errors_naming_the_store_and_the_unit(store: RunStore) -> None:
    with pytest.raises(StoreError, match="no-such-unit") as raised:
        store.uid_of("no-such-unit")
    assert store.path in str(raised.value) or store.path == ":memory:"


def test_post_processing_records_and_report_reads_go_through_the_store(store: RunStore) -> None:
    row = store.start_post_run(0, "post_process[0]", "Bands", "analysis", [], "x.csv", 1)
    store.finish_post_run(row, "ok", 0, None)
    [latest] = store.post_runs()
    assert (latest.action, latest.outcome, latest.results_version) == ("post_process[0]", "ok", 1)
    assert store.report_reads().attempt_groups() == []
