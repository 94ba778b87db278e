"""What ``octopipe report`` says about a run: per step, the funnel, retries and their cost, the
top errors, fan-out, loop-limit hits; for the run, tokens and cost split first attempts vs
retries, cost per valid unit, duration and throughput.

Read-only: the ledger is opened read-only and the run lock is never taken. Every figure is an
aggregate query of ``store.report_reads`` (or the ledger's own ``counts`` and
``max_iteration_hits``, as ``status`` shows them), folded here without a loop over units.

Words, as in every view (see ``engine/queries.py``): ``retrying`` counts units that failed an
attempt and will get another, ``failed`` units with no attempt left. Definitions:

* ``input``: units with a row at the step; ``yield`` = valid / input;
  ``pass_rate`` = valid / (valid + failed), among units with a final verdict;
  ``first_attempt_pass_rate`` (LLM steps) = first attempts judged valid / first attempts.
* A *retry* is an attempt numbered above 1 (the runner's own rounds and ``octopipe retry``
  alike); ``retries.units`` counts units with at least one, ``retries.extra_attempts`` the
  attempts themselves, ``retries.usage`` their tokens and cost: the retry overhead.
* Tokens and cost count LLM calls only (attempts in ``batch`` or ``realtime`` mode). A cost
  is ``None`` ("unknown") as soon as one call of the set has no known price: never $0.
  ``known_usd`` is what the priced calls cost.
* ``errors``: the units failing now (retrying or failed), grouped by the key of each of their
  last errors (``core.error_text``); ``attempt_errors``: every failed attempt, retried or
  not, grouped the same way (counts attempts). Both sorted by count; sample units are the
  first and last (by uid) of each stored variant of the message, up to three, lowest first.
* ``elapsed_s``: from the run's start to its end (to now for a live run, to its last status
  change otherwise); ``units_per_s`` counts units done (valid at the last step, or failed
  at a step); ``calls_per_s`` LLM calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from octopipe.core.error_text import error_keys
from octopipe.core.states import UnitStepState, derive_status
from octopipe.engine.cost_split import CostSplit, split_costs
from octopipe.engine.paths import RunPaths
from octopipe.errors import UsageError
from octopipe.store import ReportReader, RunReader, open_run_store
from octopipe.store.lock import is_held
from octopipe.store.records import AttemptGroup, ErrorText, ValueGroup

TOP_ERRORS = 10
SAMPLES = 3
LLM_MODES = ("batch", "realtime")


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Money:
    """A sum of costs: what the priced calls cost, and how many calls had no known price."""

    known_usd: float = 0.0
    unknown: int = 0

    @property
    def usd(self) -> float | None:
        return None if self.unknown else self.known_usd

    def __add__(self, other: Money) -> Money:
        return Money(self.known_usd + other.known_usd, self.unknown + other.unknown)

    def to_dict(self) -> dict[str, Any]:
        return {
            "usd": significant(self.usd),
            "known_usd": significant(self.known_usd),
            "unknown_cost_calls": self.unknown,
        }


@dataclass(frozen=True)
class Usage:
    """LLM calls and what they used."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: Money = field(default_factory=Money)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cost + other.cost,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost": self.cost.to_dict(),
        }


@dataclass(frozen=True)
class Retries:
    units: int = 0  # units with an attempt numbered above 1
    extra_attempts: int = 0  # attempts numbered above 1, every mode
    usage: Usage = field(default_factory=Usage)  # the LLM calls among them

    def __add__(self, other: Retries) -> Retries:
        return Retries(
            self.units + other.units,
            self.extra_attempts + other.extra_attempts,
            self.usage + other.usage,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "extra_attempts": self.extra_attempts,
            **self.usage.to_dict(),
        }


@dataclass(frozen=True)
class ErrorSummary:
    stage: str | None
    message: str  # the group key: numbers, quoted values and ids normalised
    count: int  # units (errors) or attempts (attempt_errors)
    samples: tuple[str, ...]  # unit ids, lowest uid first


@dataclass(frozen=True)
class FanOut:
    parents: int  # units that reached the fan-out step
    fanned_out: int  # of them, valid there (their children were made)
    children: int  # units made (their origin is the next step)

    @property
    def per_parent(self) -> float | None:
        return None if not self.fanned_out else self.children / self.fanned_out


@dataclass(frozen=True)
class ValueRow:
    """Units at a step whose record holds one value of the ``--failures-by`` field."""

    value: Any  # the decoded JSON value (None also for a record without the field)
    missing: bool  # the records have no such field
    units: int
    valid: int
    retrying: int
    failed: int

    @property
    def failing(self) -> int:
        return self.retrying + self.failed

    @property
    def fail_rate(self) -> float | None:
        return None if not self.units else self.failing / self.units


@dataclass
class StepReport:
    name: str
    scope: str
    input: int
    valid: int
    pending: int
    in_flight: int
    retrying: int
    failed: int
    retrying_by_stage: dict[str, int]
    failed_by_stage: dict[str, int]
    attempts: int  # every attempt recorded (a local step records only failures and warnings)
    failed_attempts: int
    first_attempts: int
    first_attempts_valid: int
    first: Usage  # LLM calls numbered 1
    retries: Retries
    models: list[str]  # "provider/model" of its LLM calls
    max_iterations: int
    fan_out: FanOut | None = None
    errors: list[ErrorSummary] = field(default_factory=list)
    error_groups: int = 0  # groups in all (errors holds the top ones)
    attempt_errors: list[ErrorSummary] = field(default_factory=list)
    attempt_error_groups: int = 0
    failures_by: list[ValueRow] | None = None

    @property
    def is_llm(self) -> bool:
        return self.scope == "chunk"

    @property
    def usage(self) -> Usage:
        return self.first + self.retries.usage

    @property
    def yield_(self) -> float | None:
        return _ratio(self.valid, self.input)

    @property
    def pass_rate(self) -> float | None:
        return _ratio(self.valid, self.valid + self.failed)

    @property
    def first_attempt_pass_rate(self) -> float | None:
        return _ratio(self.first_attempts_valid, self.first_attempts) if self.is_llm else None

    @property
    def cost_per_valid_unit(self) -> float | None:
        return _per(self.usage.cost, self.valid)


@dataclass
class RunReport:
    name: str
    display_name: str
    pipeline: str
    status: str
    reason: str | None
    mode: str
    provider: str | None
    model: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    elapsed_s: float | None
    steps: list[StepReport]
    failures_by: str | None = None
    top: int = TOP_ERRORS
    costs: CostSplit | None = None
    """Cost by tier and model, with the standard-price equivalent (the saving)."""
    prices: dict[str, Any] | None = None
    """What priced the run's calls (run option ``prices``)."""

    @property
    def units(self) -> int:
        return self.steps[0].input if self.steps else 0

    @property
    def valid(self) -> int:
        return self.steps[-1].valid if self.steps else 0

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.steps)

    @property
    def retrying(self) -> int:
        return sum(s.retrying for s in self.steps)

    @property
    def models(self) -> list[str]:
        return sorted({m for s in self.steps for m in s.models})

    @property
    def first(self) -> Usage:
        return sum((s.first for s in self.steps), Usage())

    @property
    def retries(self) -> Retries:
        return sum((s.retries for s in self.steps), Retries())

    @property
    def usage(self) -> Usage:
        return self.first + self.retries.usage

    @property
    def cost_per_valid_unit(self) -> float | None:
        return _per(self.usage.cost, self.valid)

    @property
    def retry_cost_share(self) -> float | None:
        """Retries' share of the cost (None while a cost is unknown or nothing was spent)."""
        total = self.usage.cost
        if total.unknown or not total.known_usd:
            return None
        return self.retries.usage.cost.known_usd / total.known_usd

    @property
    def units_done(self) -> int:
        return self.valid + self.failed

    @property
    def units_per_s(self) -> float | None:
        return None if not self.elapsed_s else self.units_done / self.elapsed_s

    @property
    def calls_per_s(self) -> float | None:
        return None if not self.elapsed_s else self.usage.calls / self.elapsed_s

    @property
    def max_iterations(self) -> int:
        return sum(s.max_iterations for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.name,
            "display_name": self.display_name,
            "pipeline": self.pipeline,
            "status": self.status,
            "reason": self.reason,
            "mode": self.mode,
            "provider": self.provider,
            "model": self.model,
            "models": self.models,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "elapsed_s": _round(self.elapsed_s, 3),
            "units": self.units,
            "valid": self.valid,
            "retrying": self.retrying,
            "failed": self.failed,
            "units_done": self.units_done,
            "units_per_s": significant(self.units_per_s, 6),
            "calls_per_s": significant(self.calls_per_s, 6),
            "first_attempts": self.first.to_dict(),
            "retries": self.retries.to_dict(),
            "total": self.usage.to_dict(),
            "retry_cost_share": _round(self.retry_cost_share, 4),
            "cost_per_valid_unit": significant(self.cost_per_valid_unit),
            "max_iterations": self.max_iterations,
            "failures_by": self.failures_by,
            "cost_by_tier": None if self.costs is None else self.costs.to_dict(),
            "prices": self.prices,
            "steps": [step_dict(s) for s in self.steps],
        }


def step_dict(step: StepReport) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": step.name,
        "scope": step.scope,
        "input": step.input,
        "valid": step.valid,
        "pending": step.pending,
        "in_flight": step.in_flight,
        "retrying": step.retrying,
        "failed": step.failed,
        "retrying_by_stage": step.retrying_by_stage,
        "failed_by_stage": step.failed_by_stage,
        "yield": _round(step.yield_, 4),
        "pass_rate": _round(step.pass_rate, 4),
        "first_attempt_pass_rate": _round(step.first_attempt_pass_rate, 4),
        "attempts": step.attempts,
        "failed_attempts": step.failed_attempts,
        "first_attempts": step.first.to_dict(),
        "retries": step.retries.to_dict(),
        "total": step.usage.to_dict(),
        "cost_per_valid_unit": significant(step.cost_per_valid_unit),
        "models": step.models,
        "max_iterations": step.max_iterations,
        "fan_out": None
        if step.fan_out is None
        else {
            "parents": step.fan_out.parents,
            "fanned_out": step.fan_out.fanned_out,
            "children": step.fan_out.children,
            "children_per_parent": _round(step.fan_out.per_parent, 4),
        },
        "errors": [_error_dict(e, "units") for e in step.errors],
        "error_groups": step.error_groups,
        "attempt_errors": [_error_dict(e, "attempts") for e in step.attempt_errors],
        "attempt_error_groups": step.attempt_error_groups,
    }
    if step.failures_by is not None:
        data["failures_by"] = [
            {
                "value": row.value,
                "missing": row.missing,
                "units": row.units,
                "valid": row.valid,
                "retrying": row.retrying,
                "failed": row.failed,
                "fail_rate": _round(row.fail_rate, 4),
            }
            for row in step.failures_by
        ]
    return data


def _error_dict(error: ErrorSummary, count: str) -> dict[str, Any]:
    return {
        "stage": error.stage,
        "message": error.message,
        count: error.count,
        "samples": list(error.samples),
    }


def _ratio(part: int, whole: int) -> float | None:
    return None if not whole else part / whole


def _per(cost: Money, units: int) -> float | None:
    return None if cost.usd is None or not units else cost.usd / units


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def significant(value: float | None, digits: int = 12) -> float | None:
    """``value`` to ``digits`` significant digits: sums of small prices lose their float
    noise (0.30000000000000004), never their precision ($0.0000193 stays as it is)."""
    return None if value is None else float(f"{value:.{digits}g}")


# --- building ----------------------------------------------------------------------------------


def run_report(
    paths: RunPaths,
    *,
    failures_by: str | None = None,
    top: int = TOP_ERRORS,
    errors: bool = True,
    now: datetime | None = None,
) -> RunReport:
    """The report of one run. ``failures_by`` names a field to group each step's units by
    (refused when no record has it); ``errors=False`` leaves the error groups out (compare)."""
    if failures_by is not None:
        check_field_name(failures_by)
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        return _build(ledger, paths, failures_by, top, errors, now or datetime.now(UTC))
    finally:
        ledger.close()


def check_field_name(name: str) -> None:
    if not name or '"' in name or any(ord(c) < 32 for c in name):
        raise UsageError(
            f"--failures-by {name!r}: a field name must be non-empty, without '\"' or "
            "control characters"
        )


def _build(
    ledger: RunReader,
    paths: RunPaths,
    failures_by: str | None,
    top: int,
    errors: bool,
    now: datetime,
) -> RunReport:
    reads = ledger.report_reads()
    info = ledger.run_info()
    counts = ledger.counts()
    hits = ledger.max_iteration_hits()
    groups = reads.attempt_groups()
    retried = reads.units_retried()
    steps = []
    for index, step in enumerate(ledger.steps):
        by_state = counts.get(index, {})
        report = _step(
            step.name,
            step.scope,
            by_state,
            [g for g in groups if g.step_idx == index],
            retried.get(index, 0),
            hits.get(index, 0),
        )
        if report.retrying or report.failed:
            _stages(report, reads.stage_counts(index))
        if step.scope == "fan_out":
            report.fan_out = FanOut(report.input, report.valid, reads.children_of(index))
        if errors and (report.retrying or report.failed):
            report.errors, report.error_groups = merge_errors(reads.error_texts(index), top)
        if errors and report.failed_attempts:
            report.attempt_errors, report.attempt_error_groups = merge_errors(
                reads.error_texts(index, attempts=True), top
            )
        if failures_by is not None:
            report.failures_by = (
                value_rows(reads.failure_groups(index, failures_by))
                if report.retrying or report.failed
                else []
            )
        steps.append(report)
    if failures_by is not None:
        _check_field_seen(failures_by, steps, reads)
    live = is_held(paths.root)
    status = derive_status(info.status, lock_held=live, has_failures=any(s.failed for s in steps))
    return RunReport(
        name=info.name,
        display_name=info.display_name,
        pipeline=info.pipeline_name,
        status=status.value,
        reason=info.status_reason,
        mode=info.mode,
        provider=info.provider,
        model=info.model,
        created_at=info.created_at,
        started_at=info.started_at,
        finished_at=info.finished_at,
        elapsed_s=elapsed(info.started_at, info.finished_at or _end(info.updated_at, live, now)),
        steps=steps,
        failures_by=failures_by,
        top=top,
        costs=split_costs(ledger.cost_by_tier()),
        prices=info.options.get("prices"),
    )


def _step(
    name: str,
    scope: str,
    by_state: dict[UnitStepState, int],
    groups: list[AttemptGroup],
    units_retried: int,
    max_iterations: int,
) -> StepReport:
    first = [g for g in groups if g.attempt_no == 1]
    again = [g for g in groups if g.attempt_no > 1]
    return StepReport(
        name=name,
        scope=scope,
        input=sum(by_state.values()),
        valid=by_state.get(UnitStepState.VALID, 0),
        pending=by_state.get(UnitStepState.PENDING, 0),
        in_flight=by_state.get(UnitStepState.IN_FLIGHT, 0),
        retrying=by_state.get(UnitStepState.FAILED, 0),
        failed=by_state.get(UnitStepState.EXHAUSTED, 0),
        retrying_by_stage={},
        failed_by_stage={},
        attempts=sum(g.attempts for g in groups),
        failed_attempts=sum(g.attempts for g in groups if g.outcome != "valid"),
        first_attempts=sum(g.attempts for g in first),
        first_attempts_valid=sum(g.attempts for g in first if g.outcome == "valid"),
        first=usage_of(first),
        retries=Retries(units_retried, sum(g.attempts for g in again), usage_of(again)),
        models=sorted(
            {f"{g.provider}/{g.model}" for g in groups if g.mode in LLM_MODES and g.model}
        ),
        max_iterations=max_iterations,
    )


def usage_of(groups: list[AttemptGroup]) -> Usage:
    """Tokens and cost of the LLM calls among ``groups`` (local attempts cost nothing)."""
    calls = [g for g in groups if g.mode in LLM_MODES]
    return Usage(
        calls=sum(g.attempts for g in calls),
        input_tokens=int(sum(g.input_tokens for g in calls)),
        output_tokens=int(sum(g.output_tokens for g in calls)),
        cached_tokens=int(sum(g.cached_tokens for g in calls)),
        cost=Money(sum(g.known_usd for g in calls), sum(g.attempts - g.priced for g in calls)),
    )


def _stages(report: StepReport, rows: list[tuple[str, str | None, int]]) -> None:
    for state, stage, n in rows:
        target = (
            report.failed_by_stage
            if state == UnitStepState.EXHAUSTED.value
            else report.retrying_by_stage
        )
        target[stage or "unknown"] = target.get(stage or "unknown", 0) + n
    report.failed_by_stage = dict(sorted(report.failed_by_stage.items()))
    report.retrying_by_stage = dict(sorted(report.retrying_by_stage.items()))


def merge_errors(texts: list[ErrorText], top: int) -> tuple[list[ErrorSummary], int]:
    """Failures grouped by stored errors -> groups by error key: a failure counts once in
    each group its errors have a key of. Samples: the first and last unit (by uid) of each
    stored variant of the group, the lowest ``SAMPLES``. Returns the ``top`` largest groups
    and how many there are in all."""
    counts: dict[tuple[str | None, str], int] = {}
    samples: dict[tuple[str | None, str], set[tuple[int, str]]] = {}
    for text in texts:
        keys = error_keys(text.errors) or [_unreadable(text)]
        for key in keys:
            group = (text.stage, key)
            counts[group] = counts.get(group, 0) + text.n
            samples.setdefault(group, set()).update(text.samples)
    order = sorted(counts, key=lambda g: (-counts[g], g[1], g[0] or ""))
    summaries = [
        ErrorSummary(
            stage,
            message,
            counts[(stage, message)],
            tuple(unit_id for _, unit_id in sorted(samples[(stage, message)])[:SAMPLES]),
        )
        for stage, message in order[:top]
    ]
    return summaries, len(order)


def _unreadable(text: ErrorText) -> str:
    if text.errors is None and text.text is not None:
        return "(stored errors are not valid JSON: `octopipe verify` names the row)"
    return "(no error message recorded)"


def value_rows(groups: list[ValueGroup]) -> list[ValueRow]:
    """Per value of the field: units by state; the most failing first."""
    tally: dict[str | None, dict[str, int]] = {}
    for group in groups:
        states = tally.setdefault(group.value, {})
        states[group.state] = states.get(group.state, 0) + group.units
    rows = [
        ValueRow(
            value=None if text is None else json.loads(text),
            missing=text is None,
            units=sum(states.values()),
            valid=states.get(UnitStepState.VALID.value, 0),
            retrying=states.get(UnitStepState.FAILED.value, 0),
            failed=states.get(UnitStepState.EXHAUSTED.value, 0),
        )
        for text, states in tally.items()
    ]
    return sorted(rows, key=lambda r: (-r.failing, -(r.fail_rate or 0), json.dumps(r.value)))


def _check_field_seen(name: str, steps: list[StepReport], reads: ReportReader) -> None:
    seen = any(not row.missing for s in steps for row in s.failures_by or [])
    if seen:
        return
    known = reads.sample_fields()
    if name in known:
        return
    listed = ", ".join(known) if known else "none"
    raise UsageError(
        f"--failures-by {name!r}: neither the failing units' records nor the first unit's "
        f"have that field (fields of the first unit: {listed})"
    )


def elapsed(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    seconds = (_parse_time(end) - _parse_time(start)).total_seconds()
    return max(seconds, 0.0)


def _end(updated_at: str, live: bool, now: datetime) -> str:
    return now.isoformat() if live else updated_at


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
