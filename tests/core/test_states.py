"""Every row of every transition table, written out here independently of the implementation.

For each machine the expected table below is the specification; the tests check that
``advance`` gives exactly these moves and raises ``IllegalTransition`` for every other
(state, event) pair.
"""

from __future__ import annotations

import contextlib
from enum import StrEnum
from itertools import product

import pytest

from octopipe.core.states import (
    BATCH_ENDED,
    BATCH_LIVE,
    BatchEvent,
    BatchState,
    CommandEvent,
    CommandState,
    DerivedStatus,
    RunEvent,
    RunStatus,
    UnitStepEvent,
    UnitStepState,
    advance,
    derive_status,
    is_terminal,
    sources,
)
from octopipe.errors import IllegalTransition

UNIT_STEP = {
    ("pending", "start"): "in_flight",
    ("pending", "fail_terminal"): "exhausted",
    ("in_flight", "succeed"): "valid",
    ("in_flight", "fail_retryable"): "failed",
    ("in_flight", "fail_terminal"): "exhausted",
    ("in_flight", "release"): "pending",
    ("failed", "retry"): "pending",
    ("exhausted", "retry"): "pending",
    ("failed", "revalidate_pass"): "valid",
    ("exhausted", "revalidate_pass"): "valid",
    ("failed", "revalidate_fail"): "failed",
    ("exhausted", "revalidate_fail"): "exhausted",
}

BATCH = {
    ("intent", "submit_ok"): "submitted",
    ("intent", "reconcile_found"): "submitted",
    ("intent", "reconcile_missing"): "abandoned",
    ("submitted", "provider_done"): "completed",
    ("submitted", "provider_expired"): "expired",
    ("submitted", "provider_cancelled"): "cancelled",
    ("submitted", "provider_failed"): "failed",
    ("completed", "collect_ok"): "collected",
    ("expired", "salvage_ok"): "collected",
    ("cancelled", "salvage_ok"): "collected",
    ("failed", "salvage_ok"): "collected",
}

RUN = {
    ("pending", "start"): "running",
    ("paused", "start"): "running",
    ("running", "start"): "running",  # a detached run taken over by a new runner
    ("running", "pause"): "paused",
    ("running", "finish"): "complete",
    ("running", "fail"): "failed",
    ("pending", "kill"): "killed",
    ("running", "kill"): "killed",
    ("paused", "kill"): "killed",
    ("complete", "reopen"): "running",
    ("failed", "reopen"): "running",
}

COMMAND = {
    ("pending", "apply"): "applied",
    ("pending", "reject"): "rejected",
}

MACHINES: list[tuple[str, type[StrEnum], type[StrEnum], dict[tuple[str, str], str]]] = [
    ("unit_step", UnitStepState, UnitStepEvent, UNIT_STEP),
    ("batch", BatchState, BatchEvent, BATCH),
    ("run", RunStatus, RunEvent, RUN),
    ("command", CommandState, CommandEvent, COMMAND),
]

EVERY_PAIR = [
    pytest.param(machine, states, events, table, state, event, id=f"{machine}:{state}+{event}")
    for machine, states, events, table in MACHINES
    for state, event in product(states, events)
]


@pytest.mark.parametrize(("machine", "states", "events", "table", "state", "event"), EVERY_PAIR)
def test_every_state_event_pair_follows_the_table(
    machine: str,
    states: type[StrEnum],
    events: type[StrEnum],
    table: dict[tuple[str, str], str],
    state: StrEnum,
    event: StrEnum,
) -> None:
    expected = table.get((state.value, event.value))
    if expected is None:
        with pytest.raises(IllegalTransition) as info:
            advance(state, event)  # type: ignore[call-overload]
        assert (info.value.machine, info.value.state, info.value.event) == (
            machine,
            state.value,
            event.value,
        )
    else:
        assert advance(state, event) == states(expected)  # type: ignore[call-overload]


@pytest.mark.parametrize(("machine", "states", "events", "table"), MACHINES)
def test_the_expected_tables_only_name_real_states_and_events(
    machine: str,
    states: type[StrEnum],
    events: type[StrEnum],
    table: dict[tuple[str, str], str],
) -> None:
    for (state, event), target in table.items():
        states(state), events(event), states(target)


@pytest.mark.parametrize("event", list(UnitStepEvent))
def test_no_event_moves_pending_to_pending(event: UnitStepEvent) -> None:
    # repair creates missing rows instead of "requeueing" pending ones
    with contextlib.suppress(IllegalTransition):
        assert advance(UnitStepState.PENDING, event) is not UnitStepState.PENDING


def test_an_event_of_another_machine_is_illegal() -> None:
    with pytest.raises(IllegalTransition):
        advance(UnitStepState.PENDING, RunEvent.START)  # type: ignore[call-overload]


def test_a_non_state_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        advance("pending", UnitStepEvent.START)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("state", "terminal"),
    [(s, s in {UnitStepState.VALID, UnitStepState.EXHAUSTED}) for s in UnitStepState]
    + [(s, s in {BatchState.COLLECTED, BatchState.ABANDONED}) for s in BatchState]
    + [(s, s in {RunStatus.COMPLETE, RunStatus.FAILED, RunStatus.KILLED}) for s in RunStatus],
)
def test_is_terminal(state: UnitStepState | BatchState | RunStatus, terminal: bool) -> None:
    assert is_terminal(state) is terminal


def test_live_and_ended_batch_states() -> None:
    ended = {BatchState.COMPLETED, BatchState.EXPIRED, BatchState.CANCELLED, BatchState.FAILED}
    assert ended == BATCH_ENDED
    assert {BatchState.INTENT, BatchState.SUBMITTED, *ended} == BATCH_LIVE
    # a live batch is one the engine still has to move: the table has a way out of each
    for state in BATCH_LIVE:
        assert not is_terminal(state) and any(s == state for s, _ in BATCH)
    # an ended batch is collected (or salvaged), and nothing else
    for state in BATCH_ENDED:
        assert {e for s, e in BATCH if s == state} <= {"collect_ok", "salvage_ok"}


def test_sources_lists_the_states_an_event_leaves() -> None:
    assert sources(UnitStepState, UnitStepEvent.RETRY) == {
        UnitStepState.FAILED,
        UnitStepState.EXHAUSTED,
    }
    assert sources(UnitStepState, UnitStepEvent.FAIL_TERMINAL) == {
        UnitStepState.PENDING,
        UnitStepState.IN_FLIGHT,
    }
    assert sources(BatchState, BatchEvent.SALVAGE_OK) == {
        BatchState.EXPIRED,
        BatchState.CANCELLED,
        BatchState.FAILED,
    }


@pytest.mark.parametrize(
    ("status", "lock_held", "has_failures", "shown"),
    [
        (RunStatus.RUNNING, True, False, DerivedStatus.RUNNING),
        (RunStatus.RUNNING, False, False, DerivedStatus.DETACHED),
        (RunStatus.RUNNING, False, True, DerivedStatus.DETACHED),
        (RunStatus.COMPLETE, False, False, DerivedStatus.COMPLETE),
        (RunStatus.COMPLETE, False, True, DerivedStatus.COMPLETE_WITH_FAILURES),
        (RunStatus.PAUSED, False, True, DerivedStatus.PAUSED),
        (RunStatus.PENDING, False, False, DerivedStatus.PENDING),
        (RunStatus.FAILED, False, True, DerivedStatus.FAILED),
        (RunStatus.KILLED, False, False, DerivedStatus.KILLED),
    ],
)
def test_derived_status(
    status: RunStatus, lock_held: bool, has_failures: bool, shown: DerivedStatus
) -> None:
    assert derive_status(status, lock_held=lock_held, has_failures=has_failures) is shown
