"""The state machines of octopipe: each one an enum of states, an enum of events, one table.

Every state change in the ledger goes through :func:`advance`, which looks the (state, event)
pair up in the machine's single transition table and raises :class:`IllegalTransition` when the
table has no such row. Nothing else in the code decides which moves are legal, and no state
name is ever built from a string: the ledger stores ``state.value`` and reads it back with
``UnitStepState(text)``.

Machines:

* :class:`UnitStepState` — one unit at one step (``unit_steps`` rows).
* :class:`BatchState` — one provider batch (``batches`` rows).
* :class:`RunStatus` — the run as persisted; :func:`derive_status` adds what a viewer sees
  (``detached``, ``complete_with_failures``).
* :class:`CommandState` — a command queued by the CLI/TUI for the live runner.

This module is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar, overload

from octopipe.errors import IllegalTransition

# --- a unit at a step ---------------------------------------------------------------------------


class UnitStepState(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    VALID = "valid"
    FAILED = "failed"  # retryable: waiting for another attempt
    EXHAUSTED = "exhausted"  # terminal failure (budget spent or deterministic error)


class UnitStepEvent(StrEnum):
    START = "start"
    SUCCEED = "succeed"
    FAIL_RETRYABLE = "fail_retryable"
    FAIL_TERMINAL = "fail_terminal"
    RELEASE = "release"  # pause or crash: the attempt never finished
    RETRY = "retry"  # the retry command (or the runner's own retry round)
    REVALIDATE_PASS = "revalidate_pass"
    REVALIDATE_FAIL = "revalidate_fail"  # the stored answer still fails: the unit stays put


_U, _UE = UnitStepState, UnitStepEvent
UNIT_STEP_TRANSITIONS: Mapping[tuple[UnitStepState, UnitStepEvent], UnitStepState] = (
    MappingProxyType(
        {
            (_U.PENDING, _UE.START): _U.IN_FLIGHT,
            # render/expression failures found before any call is made
            (_U.PENDING, _UE.FAIL_TERMINAL): _U.EXHAUSTED,
            (_U.IN_FLIGHT, _UE.SUCCEED): _U.VALID,
            (_U.IN_FLIGHT, _UE.FAIL_RETRYABLE): _U.FAILED,
            (_U.IN_FLIGHT, _UE.FAIL_TERMINAL): _U.EXHAUSTED,
            (_U.IN_FLIGHT, _UE.RELEASE): _U.PENDING,
            (_U.FAILED, _UE.RETRY): _U.PENDING,
            (_U.EXHAUSTED, _UE.RETRY): _U.PENDING,
            (_U.FAILED, _UE.REVALIDATE_PASS): _U.VALID,
            (_U.EXHAUSTED, _UE.REVALIDATE_PASS): _U.VALID,
            (_U.FAILED, _UE.REVALIDATE_FAIL): _U.FAILED,
            (_U.EXHAUSTED, _UE.REVALIDATE_FAIL): _U.EXHAUSTED,
            # There is deliberately no pending -> pending "requeue": a unit that is missing at
            # a step has no row there, and repair creates the row.
        }
    )
)

UNIT_STEP_TERMINAL: frozenset[UnitStepState] = frozenset({_U.VALID, _U.EXHAUSTED})


# --- a provider batch ---------------------------------------------------------------------------


class BatchState(StrEnum):
    INTENT = "intent"  # recorded before the provider call
    SUBMITTED = "submitted"
    COMPLETED = "completed"  # the provider says done; results not yet stored
    COLLECTED = "collected"  # results stored
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"
    ABANDONED = "abandoned"  # the intent never reached the provider (reconciled on restart)


class BatchEvent(StrEnum):
    SUBMIT_OK = "submit_ok"
    PROVIDER_DONE = "provider_done"
    COLLECT_OK = "collect_ok"
    PROVIDER_EXPIRED = "provider_expired"
    PROVIDER_CANCELLED = "provider_cancelled"
    PROVIDER_FAILED = "provider_failed"
    RECONCILE_FOUND = "reconcile_found"
    RECONCILE_MISSING = "reconcile_missing"
    SALVAGE_OK = "salvage_ok"  # finished lines of an expired/cancelled/failed batch kept


_B, _BE = BatchState, BatchEvent
BATCH_TRANSITIONS: Mapping[tuple[BatchState, BatchEvent], BatchState] = MappingProxyType(
    {
        (_B.INTENT, _BE.SUBMIT_OK): _B.SUBMITTED,
        (_B.INTENT, _BE.RECONCILE_FOUND): _B.SUBMITTED,
        (_B.INTENT, _BE.RECONCILE_MISSING): _B.ABANDONED,
        (_B.SUBMITTED, _BE.PROVIDER_DONE): _B.COMPLETED,
        (_B.SUBMITTED, _BE.PROVIDER_EXPIRED): _B.EXPIRED,
        (_B.SUBMITTED, _BE.PROVIDER_CANCELLED): _B.CANCELLED,
        (_B.SUBMITTED, _BE.PROVIDER_FAILED): _B.FAILED,
        (_B.COMPLETED, _BE.COLLECT_OK): _B.COLLECTED,
        (_B.EXPIRED, _BE.SALVAGE_OK): _B.COLLECTED,
        (_B.CANCELLED, _BE.SALVAGE_OK): _B.COLLECTED,
        (_B.FAILED, _BE.SALVAGE_OK): _B.COLLECTED,
    }
)

# A batch in any other state may still hold units the provider is working on (or results
# not yet salvaged): its units stay claimed until it reaches one of these.
BATCH_TERMINAL: frozenset[BatchState] = frozenset({_B.COLLECTED, _B.ABANDONED})
# Not terminal: the batch still holds its units (an intent, a batch at the provider, results
# waiting to be collected). The engine follows every live batch.
BATCH_LIVE: frozenset[BatchState] = frozenset(BatchState) - BATCH_TERMINAL
# Ended at the provider (finished, expired, cancelled or failed): what it has is collected.
BATCH_ENDED: frozenset[BatchState] = BATCH_LIVE - {_B.INTENT, _B.SUBMITTED}


# --- the run ------------------------------------------------------------------------------------


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETE = "complete"
    FAILED = "failed"
    KILLED = "killed"


class RunEvent(StrEnum):
    START = "start"
    PAUSE = "pause"
    FINISH = "finish"
    FAIL = "fail"
    KILL = "kill"
    REOPEN = "reopen"  # retry/repair/revalidate on a finished run


_R, _RE = RunStatus, RunEvent
RUN_TRANSITIONS: Mapping[tuple[RunStatus, RunEvent], RunStatus] = MappingProxyType(
    {
        (_R.PENDING, _RE.START): _R.RUNNING,
        (_R.PAUSED, _RE.START): _R.RUNNING,
        # the store says running but its runner died (detached): a new runner takes over
        (_R.RUNNING, _RE.START): _R.RUNNING,
        (_R.RUNNING, _RE.PAUSE): _R.PAUSED,
        (_R.RUNNING, _RE.FINISH): _R.COMPLETE,
        (_R.RUNNING, _RE.FAIL): _R.FAILED,
        (_R.PENDING, _RE.KILL): _R.KILLED,
        (_R.RUNNING, _RE.KILL): _R.KILLED,
        (_R.PAUSED, _RE.KILL): _R.KILLED,
        (_R.COMPLETE, _RE.REOPEN): _R.RUNNING,
        (_R.FAILED, _RE.REOPEN): _R.RUNNING,
    }
)

RUN_TERMINAL: frozenset[RunStatus] = frozenset({_R.COMPLETE, _R.FAILED, _R.KILLED})


class DerivedStatus(StrEnum):
    """What `status`, `ps` and the TUI show: the stored status plus liveness and outcome."""

    PENDING = "pending"
    RUNNING = "running"
    DETACHED = "detached"  # the store says running, but nobody holds the run lock
    PAUSED = "paused"
    COMPLETE = "complete"
    COMPLETE_WITH_FAILURES = "complete_with_failures"
    FAILED = "failed"
    KILLED = "killed"


def derive_status(status: RunStatus, *, lock_held: bool, has_failures: bool) -> DerivedStatus:
    """The displayed status of a run from its stored status, its lock and its outcome."""
    if status is RunStatus.RUNNING and not lock_held:
        return DerivedStatus.DETACHED
    if status is RunStatus.COMPLETE and has_failures:
        return DerivedStatus.COMPLETE_WITH_FAILURES
    return DerivedStatus(status.value)


# --- a queued command ---------------------------------------------------------------------------


class CommandState(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"


class CommandEvent(StrEnum):
    APPLY = "apply"
    REJECT = "reject"


COMMAND_TRANSITIONS: Mapping[tuple[CommandState, CommandEvent], CommandState] = MappingProxyType(
    {
        (CommandState.PENDING, CommandEvent.APPLY): CommandState.APPLIED,
        (CommandState.PENDING, CommandEvent.REJECT): CommandState.REJECTED,
    }
)


# --- the one transition function ---------------------------------------------------------------

_Table = Mapping[Any, Any]
_MACHINES: Mapping[type, tuple[str, type, _Table]] = {
    UnitStepState: ("unit_step", UnitStepEvent, UNIT_STEP_TRANSITIONS),
    BatchState: ("batch", BatchEvent, BATCH_TRANSITIONS),
    RunStatus: ("run", RunEvent, RUN_TRANSITIONS),
    CommandState: ("command", CommandEvent, COMMAND_TRANSITIONS),
}

S = TypeVar("S", UnitStepState, BatchState, RunStatus, CommandState)


@overload
def advance(state: UnitStepState, event: UnitStepEvent) -> UnitStepState: ...
@overload
def advance(state: BatchState, event: BatchEvent) -> BatchState: ...
@overload
def advance(state: RunStatus, event: RunEvent) -> RunStatus: ...
@overload
def advance(state: CommandState, event: CommandEvent) -> CommandState: ...
def advance(state: object, event: object) -> object:
    """The state reached from ``state`` on ``event``; raises ``IllegalTransition`` otherwise."""
    machine, event_type, table = _machine(state)
    if not isinstance(event, event_type):
        raise IllegalTransition(machine, str(state), f"{event!r} (not a {event_type.__name__})")
    try:
        return table[(state, event)]
    except KeyError:
        raise IllegalTransition(machine, str(state), str(event)) from None


def is_terminal(state: UnitStepState | BatchState | RunStatus) -> bool:
    """Whether nothing more will happen to it without a deliberate command (retry, reopen)."""
    match state:
        case UnitStepState():
            return state in UNIT_STEP_TERMINAL
        case BatchState():
            return state in BATCH_TERMINAL
        case RunStatus():
            return state in RUN_TERMINAL


def sources(state_type: type[S], event: object) -> frozenset[S]:
    """Every state of ``state_type`` from which ``event`` is legal (for bulk SQL updates)."""
    _, _, table = _machine_of_type(state_type)
    return frozenset(state for (state, on) in table if on == event)


def _machine(state: object) -> tuple[str, type, _Table]:
    return _machine_of_type(type(state))


def _machine_of_type(state_type: type) -> tuple[str, type, _Table]:
    try:
        return _MACHINES[state_type]
    except KeyError:
        raise TypeError(f"{state_type.__name__} is not a state machine of octopipe") from None
