"""Typed values that go into and come out of the ledger.

Inputs (``RunMeta``, ``StepDef``, ``AttemptRecord``) are what the engine hands to the store;
outputs (``ClaimedUnit``, ``FailureRow``, ``VerifyReport`` ...) are what its queries return.
All are frozen dataclasses; JSON-shaped payloads stay plain ``dict``/``list``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

from octopipe.core.commands import Command
from octopipe.core.states import BatchState, CommandState, RunStatus, UnitStepState
from octopipe.store.codec import utc_now

Json = dict[str, Any]
Mode = Literal["batch", "realtime"]
AttemptMode = Literal["batch", "realtime", "local"]
Outcome = Literal["valid", "failed", "error"]
Stage = Literal["render", "provider", "parse", "schema", "rules", "expression"]
UnitScope = Literal["chunk", "expression", "fan_out"]
Level = Literal["debug", "info", "warning", "error"]

STAGES: tuple[Stage, ...] = ("render", "provider", "parse", "schema", "rules", "expression")


@dataclass(frozen=True)
class RunMeta:
    """What ``init`` knows about a run when it creates the ledger."""

    name: str
    pipeline_name: str
    mode: Mode = "batch"
    display_name: str | None = None
    provider: str | None = None
    model: str | None = None
    max_units: int | None = None
    repeat: int | None = None
    options: Json = field(default_factory=dict)


@dataclass(frozen=True)
class RunnerIdentity:
    """A runner, as the claims it makes name it: a random ``token`` (unique across hosts and
    restarts), where it runs and since when (for people reading the store)."""

    token: str
    host: str
    pid: int
    started_at: str

    @classmethod
    def here(cls) -> RunnerIdentity:
        """This process, starting now."""
        return cls(uuid.uuid4().hex, socket.gethostname(), os.getpid(), utc_now())


@dataclass(frozen=True)
class StepDef:
    """A per-unit step, in pipeline order (run-scope steps are not per-unit and not listed)."""

    name: str
    scope: UnitScope = "chunk"


@dataclass(frozen=True)
class RunInfo:
    name: str
    display_name: str
    pipeline_name: str
    status: RunStatus
    status_reason: str | None
    mode: Mode
    provider: str | None
    model: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    max_units: int | None
    repeat: int | None
    options: Json
    steps: tuple[StepDef, ...]


@dataclass(slots=True)
class AttemptRecord:
    """One attempt at one unit-step: an LLM call (or a local evaluation that failed).

    Treat it as immutable once built. It is not ``frozen`` because a frozen dataclass sets
    each field through ``object.__setattr__``: 3.2 µs a record against 0.9 µs, paid once per
    collected unit (a million times in a million-unit batch).

    ``request`` and ``response`` are stored as deduplicated compressed blobs; ``response`` is
    the raw text exactly as received, so a later revalidation can re-read it.
    ``cost_usd=None`` means the cost is unknown (never a guess).
    """

    outcome: Outcome
    mode: AttemptMode = "realtime"
    provider: str | None = None
    model: str | None = None
    stage: Stage | None = None
    errors: list[Json] = field(default_factory=list)
    request: str | None = None
    response: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    batch_local_id: str | None = None
    tier: str | None = None
    """The tier that served the call (standard, batch, flex, priority); ``None``: no call."""
    standard_cost_usd: float | None = None
    """The same usage at the standard realtime price (``None``: unknown)."""


class Success(NamedTuple):
    """A unit that passed a step: the fields it added, and the call that produced them
    (``None`` for a local step)."""

    uid: int
    delta: Mapping[str, Any]
    attempt: AttemptRecord | None = None
    encoded: str | None = None
    """``delta`` already written as the ledger's JSON (``codec.dumps``), when the caller had
    to encode it anyway (a local step passing it to the next one); ``None``: encode it here."""


class CleanWalk(NamedTuple):
    """A unit that passed ``len(outputs)`` consecutive steps, the first being the one it was
    pending at; ``outputs[k]`` is what step ``first + k`` added, as the ledger's JSON
    (``codec.dumps``)."""

    uid: int
    outputs: tuple[str, ...]


class Failure(NamedTuple):
    """A unit that failed an attempt: ``terminal`` makes it ``exhausted`` (no more tries)."""

    uid: int
    attempt: AttemptRecord
    terminal: bool


@dataclass(frozen=True)
class AttemptRow:
    """An attempt as stored (history is append-only: rows are never rewritten)."""

    id: int
    unit_id: str
    step_idx: int
    attempt_no: int
    outcome: Outcome
    mode: AttemptMode
    provider: str | None
    model: str | None
    stage: Stage | None
    errors: list[Json]
    request: str | None
    response: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float | None
    latency_ms: int | None
    started_at: str | None
    finished_at: str | None
    batch_local_id: str | None


@dataclass(frozen=True)
class ClaimedUnit:
    """A unit handed to the engine for one step.

    ``record`` is the step's input: the unit's fields merged with what its earlier steps added.
    ``attempt_no`` is the number the coming attempt will be stored under; ``budget_used`` counts
    the attempts made since the last manual retry (what a retry budget compares against).
    """

    uid: int
    unit_id: str
    record: Json
    attempt_no: int
    budget_used: int


class InFlightUnit(NamedTuple):
    """A unit in flight at a step, without its input record (``inputs_of`` reads those):
    ``attempt_no`` and ``budget_used`` as in `ClaimedUnit`."""

    uid: int
    attempt_no: int
    budget_used: int


@dataclass(frozen=True)
class FailureRow:
    """A unit that failed at a step, with everything needed to understand or revalidate it."""

    uid: int
    unit_id: str
    step_idx: int
    state: UnitStepState
    attempts: int
    stage: Stage | None
    errors: list[Json]
    raw_response: str | None
    request: str | None
    input: Json


@dataclass(frozen=True)
class StepReport:
    """One step as ``verify`` sees it. Counts use the words every view uses: ``retrying``
    (failed, another attempt due) and ``failed`` (no attempt left). The lists hold every id.

    * ``missing``: expected here, without a row (``repair`` requeues them);
    * ``duplicated``: in more than one live batch of the step;
    * ``orphaned``: a row here although the unit was never expected here;
    * ``miscounted``: the row's attempt counter is behind its stored attempts, so the next
      attempt would reuse a number (``repair`` raises the counter);
    * ``stranded``: in flight with no live runner and no open batch (a runner died; ``repair``
      or resuming returns them to pending). Only reported when the caller says no runner is
      live;
    * ``corrupt``: a stored value of the unit at this step (its fields, output, errors or an
      attempt's errors) is not readable JSON; nothing can repair that but a backup.
    """

    step_idx: int
    name: str
    expected: int
    valid: int
    retrying: int
    failed: int
    pending: int
    in_flight: int
    missing: list[str]
    duplicated: list[str]
    orphaned: list[str]
    miscounted: list[str] = field(default_factory=list)
    stranded: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    PROBLEMS: ClassVar[tuple[str, ...]] = (
        "missing",
        "duplicated",
        "orphaned",
        "miscounted",
        "stranded",
        "corrupt",
    )

    @property
    def ok(self) -> bool:
        return not any(getattr(self, name) for name in self.PROBLEMS)


@dataclass(frozen=True)
class VerifyReport:
    """Per step: who was expected, where each unit stands, and every id that is out of place;
    ``problems`` are damaged values that belong to no unit (the run's options, an event);
    ``totals`` every way the kept LLM totals row disagrees with the attempts (``repair``
    rebuilds it)."""

    steps: list[StepReport]
    problems: list[str] = field(default_factory=list)
    totals: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.totals and all(s.ok for s in self.steps)

    def to_dict(self) -> Json:
        return {
            "ok": self.ok,
            "steps": [asdict(s) | {"ok": s.ok} for s in self.steps],
            "problems": list(self.problems),
            "totals": list(self.totals),
        }


@dataclass(frozen=True)
class RepairCounts:
    """What ``repair`` changed: rows created for missing units, attempt counters raised,
    whether the LLM totals row was rebuilt from the attempts."""

    missing: int
    recounted: int
    totals: bool = False


@dataclass(frozen=True)
class BatchRow:
    id: int
    local_id: str
    step_idx: int
    provider: str
    model: str
    provider_batch_id: str | None
    state: BatchState
    n_units: int
    content_hash: str
    estimate_usd: float | None
    actual_usd: float | None
    created_at: str
    submitted_at: str | None
    finished_at: str | None
    provider_status: str | None
    error: str | None


@dataclass(frozen=True)
class EventRow:
    id: int
    ts: str
    level: Level
    tag: str
    message: str
    data: Json | None


@dataclass(frozen=True)
class CommandRow:
    """A queued command as stored. ``command`` is ``None`` when the stored row cannot be read
    back as one (an unknown kind, damaged arguments): ``problem`` says why, and the runner
    rejects it with that reason instead of stopping."""

    id: int
    ts: str
    kind: str
    command: Command | None
    problem: str | None
    state: CommandState
    applied_at: str | None
    result: str | None


@dataclass(frozen=True)
class CostTotals:
    """Money and tokens over every stored attempt. Unknown costs are counted, not guessed."""

    known_usd: float
    unknown_cost_attempts: int
    attempts: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int


@dataclass(frozen=True)
class TierTotal:
    """What the LLM attempts served at one tier cost: ``known_usd`` sums the known prices,
    ``unknown_calls`` counts the calls whose price is unknown."""

    tier: str
    calls: int
    known_usd: float
    unknown_calls: int

    @property
    def cost_usd(self) -> float | None:
        return None if self.unknown_calls else self.known_usd


@dataclass(frozen=True)
class TierCost:
    """What the answered calls of one (provider, model, tier) cost, and what the same usage
    costs at the standard realtime price. Unknown costs are counted, not guessed: ``*_usd``
    sums the known ones, ``unknown_*`` counts the calls whose price is unknown."""

    provider: str
    model: str
    tier: str
    calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    known_usd: float
    unknown_calls: int
    standard_known_usd: float
    standard_unknown_calls: int


PostKind = Literal["analysis", "script", "gzip", "run_script", "extract"]
PostOutcome = Literal["running", "ok", "failed", "skipped"]


@dataclass(frozen=True)
class PostRunRow:
    """One execution (or skip) of a post-processing action or run-scope step, as recorded.

    ``results_version`` is the ledger's results version it was computed from: when the ledger
    has moved past it, the output is stale. ``outcome`` ``running`` with no live runner means
    it was interrupted."""

    id: int
    position: int
    action: str
    name: str
    kind: PostKind
    command: list[str]
    output: str | None
    results_version: int
    started_at: str
    finished_at: str | None
    outcome: PostOutcome
    exit_code: int | None
    detail: str | None

    def to_dict(self) -> Json:
        return asdict(self)


# --- what the Octobatch-compatible view and the reports read ------------------------------------


@dataclass(frozen=True)
class FailedAttempt:
    """One attempt of a unit at a step that did not give a valid result."""

    uid: int
    unit_id: str
    attempt_no: int
    stage: str | None
    errors: list[Any]
    raw_response: str | None
    input: Json  # the step's input record


class AttemptGroup(NamedTuple):
    step_idx: int
    outcome: str
    attempt_no: int
    mode: str
    provider: str | None
    model: str | None
    attempts: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    known_usd: float
    priced: int  # attempts whose cost is known (cost_usd IS NOT NULL)


class ErrorText(NamedTuple):
    stage: str | None
    text: str | None  # the errors as stored (JSON text)
    errors: Any  # parsed; None when the stored text is not JSON
    n: int  # units (failing now) or attempts (history) with exactly these errors
    samples: list[tuple[int, str]]  # (uid, unit id) of its first and last unit


class ValueGroup(NamedTuple):
    value: str | None  # the field's value as JSON text; None: the record has no such field
    state: str
    units: int


@dataclass(frozen=True)
class UnitRow:
    """One unit at one step, as a units table lists it."""

    uid: int
    unit_id: str
    state: UnitStepState
    attempts: int
    stage: str | None
    error: str | None
    updated_at: str


@dataclass(frozen=True)
class UnitAtStep:
    """A unit at one step, for the inspector: what went in and what came out."""

    step_idx: int
    state: UnitStepState
    attempts: int
    stage: str | None
    error: str | None
    input: Json  # the unit's record at this step (fields + outputs of earlier steps)
    output: Json | None  # this step's output when valid
