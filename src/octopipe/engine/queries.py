"""Read-only views of runs for ``status``, ``info``, ``ps`` and the TUI.

Readers open the ledger read-only and never take the run lock, so they never slow or block the
runner. Liveness is the lock: a run whose stored status is ``running`` while nobody holds its
lock is shown as ``detached``.

One vocabulary in every view, JSON and tables alike: ``retrying`` counts units that failed an
attempt and will get another (state ``failed`` in the ledger), ``failed`` counts units with no
attempt left (state ``exhausted``); a run's ``failed`` is the sum of its steps' ``failed``.
``list_runs`` lists every run it can read: a run whose ledger cannot be used is listed with
status ``unreadable`` and the reason, never hiding the others.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from octopipe.core.states import BATCH_TERMINAL, DerivedStatus, UnitStepState, derive_status
from octopipe.engine.cost_split import split_costs
from octopipe.engine.paths import RunPaths, iter_runs
from octopipe.engine.post_view import post_view
from octopipe.errors import OctopipeError, UsageError
from octopipe.store import RunReader, open_run_store
from octopipe.store.lock import holder_pid, is_held
from octopipe.store.records import STAGES, RunInfo, StepReport, TierTotal, VerifyReport

__all__ = [
    "STAGES",
    "RunDetails",
    "RunInfo",
    "RunStatusView",
    "StepReport",
    "VerifyReport",
    "list_runs",
    "run_details",
    "run_info",
    "run_status",
    "runner_live",
    "step_index",
    "step_index_of",
    "verify_run",
]

FAILED_STATES = (UnitStepState.FAILED, UnitStepState.EXHAUSTED)
UNREADABLE = "unreadable"


@dataclass
class StepStatus:
    name: str
    scope: str
    pending: int = 0
    in_flight: int = 0
    valid: int = 0
    retrying: int = 0  # failed an attempt, another one is due (ledger state "failed")
    failed: int = 0  # no attempt left (ledger state "exhausted")
    max_iterations: int = 0  # units whose loop reached the step's max_iterations

    @property
    def total(self) -> int:
        return self.pending + self.in_flight + self.valid + self.retrying + self.failed

    @classmethod
    def from_counts(
        cls, name: str, scope: str, by_state: dict[UnitStepState, int], max_iterations: int = 0
    ) -> StepStatus:
        return cls(
            name,
            scope,
            pending=by_state.get(UnitStepState.PENDING, 0),
            in_flight=by_state.get(UnitStepState.IN_FLIGHT, 0),
            valid=by_state.get(UnitStepState.VALID, 0),
            retrying=by_state.get(UnitStepState.FAILED, 0),
            failed=by_state.get(UnitStepState.EXHAUSTED, 0),
            max_iterations=max_iterations,
        )


@dataclass
class RunStatusView:
    name: str
    display_name: str
    pipeline: str
    status: str
    reason: str | None
    mode: str
    provider: str | None
    model: str | None
    created_at: str
    updated_at: str
    live: bool
    runner_pid: int | None
    units: int
    valid: int
    failed: int
    cost_usd: float | None
    """The run's cost; ``None`` (JSON ``null``) as soon as one call's price is unknown."""
    known_cost_usd: float
    """What the calls with a known price cost (a lower bound while some are unknown)."""
    unknown_cost_attempts: int
    input_tokens: int
    output_tokens: int
    steps: list[StepStatus] = field(default_factory=list)
    archived: bool = False
    path: str = ""
    batch_counts: dict[str, int] = field(default_factory=dict)  # state -> batches
    open_batches: list[dict[str, Any]] = field(default_factory=list)  # not yet collected
    error: str | None = None  # why the run's ledger cannot be read (status "unreadable")
    post: list[dict[str, Any]] = field(default_factory=list)  # post-processing, latest states
    prices: dict[str, Any] | None = None
    """What priced the run's calls (its last session's): database and version, price files."""
    price_history: list[dict[str, Any]] = field(default_factory=list)
    """Every session's price record, oldest first (``prices`` plus ``session_started_at``)."""
    cost_by_tier: list[dict[str, Any]] = field(default_factory=list)
    """Each tier's calls and cost, costliest first (kept totals: cheap enough for ``ps``)."""
    costs: dict[str, Any] | None = None
    """Cost by tier and by model with the standard-price equivalent (`cost_split`); only
    views of one run (``status``, ``info``) fill it, ``ps`` does not."""

    @classmethod
    def unreadable(cls, paths: RunPaths, archived: bool, error: str) -> RunStatusView:
        """A run listed by ``ps`` whose ledger cannot be used: its name, where, and why."""
        return cls(
            name=paths.name,
            display_name=paths.name,
            pipeline="?",
            status=UNREADABLE,
            reason=error,
            mode="?",
            provider=None,
            model=None,
            created_at="",
            updated_at="",
            live=is_held(paths.root),
            runner_pid=None,
            units=0,
            valid=0,
            failed=0,
            cost_usd=None,
            known_cost_usd=0.0,
            unknown_cost_attempts=0,
            input_tokens=0,
            output_tokens=0,
            archived=archived,
            path=str(paths.root),
            error=error,
        )

    @property
    def progress(self) -> float:
        """Done units / all units: a unit is done when valid at the last step or failed (no
        attempt left) at any step; units not yet at the last step count as not done."""
        if not self.steps or not self.units:
            return 0.0
        done = self.steps[-1].valid + sum(step.failed for step in self.steps)
        return min(1.0, done / self.units)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["progress"] = round(self.progress, 4)
        return data


def run_status(paths: RunPaths, archived: bool = False, *, costs: bool = False) -> RunStatusView:
    """``costs``: also split the cost by tier and model (one more pass over the attempts)."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        return _view(ledger, paths, archived, split=costs)
    finally:
        ledger.close()


def status_of(ledger: RunReader, paths: RunPaths, archived: bool = False) -> RunStatusView:
    """``run_status`` over a store the caller has opened (read-only) for more reads."""
    return _view(ledger, paths, archived)


def _view(
    ledger: RunReader, paths: RunPaths, archived: bool, *, split: bool = False
) -> RunStatusView:
    info = ledger.run_info()
    counts = ledger.counts()
    hits = ledger.max_iteration_hits()
    steps = [
        StepStatus.from_counts(step.name, step.scope, counts.get(index, {}), hits.get(index, 0))
        for index, step in enumerate(ledger.steps)
    ]
    live = is_held(paths.root)
    failed = sum(s.failed for s in steps)
    derived = derive_status(info.status, lock_held=live, has_failures=failed > 0)
    costs = ledger.cost_totals()
    last = steps[-1] if steps else StepStatus("", "")
    return RunStatusView(
        name=info.name,
        display_name=info.display_name,
        pipeline=info.pipeline_name,
        status=derived.value,
        reason=info.status_reason,
        mode=info.mode,
        provider=info.provider,
        model=info.model,
        created_at=info.created_at,
        updated_at=info.updated_at,
        live=live,
        runner_pid=holder_pid(paths.root) if live else None,
        units=steps[0].total if steps else 0,
        valid=last.valid,
        failed=failed,
        cost_usd=None if costs.unknown_cost_attempts else round(costs.known_usd, 12),
        known_cost_usd=round(costs.known_usd, 12),
        unknown_cost_attempts=costs.unknown_cost_attempts,
        input_tokens=costs.input_tokens,
        output_tokens=costs.output_tokens,
        steps=steps,
        archived=archived,
        path=str(paths.root),
        post=[state.to_dict() for state in post_view(ledger, paths, live=live)],
        prices=info.options.get("prices"),
        price_history=list(info.options.get("price_history") or []),
        cost_by_tier=[_tier_dict(t) for t in ledger.tier_totals()],
        costs=split_costs(ledger.cost_by_tier()).to_dict() if split else None,
        **_batches(ledger),
    )


def _tier_dict(total: TierTotal) -> dict[str, Any]:
    return {
        "tier": total.tier,
        "calls": total.calls,
        "cost_usd": None if total.cost_usd is None else round(total.cost_usd, 12),
        "known_cost_usd": round(total.known_usd, 12),
        "unknown_cost_calls": total.unknown_calls,
    }


def _batches(ledger: RunReader) -> dict[str, Any]:
    """Batches by state, and what each batch not yet collected is doing at the provider."""
    counts: Counter[str] = Counter()
    open_batches = []
    for batch in ledger.batches():
        counts[batch.state.value] += 1
        if batch.state not in BATCH_TERMINAL:
            open_batches.append(
                {
                    "batch": batch.local_id,
                    "step": ledger.steps[batch.step_idx].name,
                    "state": batch.state.value,
                    "provider": batch.provider,
                    "provider_batch_id": batch.provider_batch_id,
                    "at_provider": batch.provider_status,
                    "units": batch.n_units,
                    "submitted_at": batch.submitted_at,
                    "estimate_usd": batch.estimate_usd,
                }
            )
    return {"batch_counts": dict(sorted(counts.items())), "open_batches": open_batches}


def list_runs(runs_dir: Path, include_archived: bool = False) -> list[RunStatusView]:
    """Every run under ``runs_dir``; one whose ledger cannot be read is listed as
    ``unreadable`` with the reason (``error``), and the others are listed all the same."""
    views = []
    for paths, archived in iter_runs(runs_dir, include_archived):
        try:
            views.append(run_status(paths, archived))
        except OctopipeError as exc:
            views.append(RunStatusView.unreadable(paths, archived, exc.message))
        except OSError as exc:  # e.g. a ledger this user may not read
            views.append(RunStatusView.unreadable(paths, archived, f"{paths.ledger}: {exc}"))
    order = {DerivedStatus.RUNNING.value: 0, DerivedStatus.DETACHED.value: 1, UNREADABLE: 2}
    return sorted(views, key=lambda v: (order.get(v.status, 3), v.name))


@dataclass
class StepFunnel:
    name: str
    scope: str
    input: int  # units with a row at this step
    valid: int
    pending: int
    in_flight: int
    retrying: int
    failed: int  # terminal failures (exhausted)
    failed_by_stage: dict[str, int] = field(default_factory=dict)

    @property
    def yield_(self) -> float | None:
        return None if not self.input else self.valid / self.input


@dataclass
class RunDetails:
    status: RunStatusView
    snapshot: str
    ledger: str
    log: str
    outputs: str
    options: dict[str, Any]
    started_at: str | None
    finished_at: str | None
    funnel: list[StepFunnel]
    batches: dict[str, dict[str, int]]  # step -> state -> count
    events: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "status"}
        for entry, step in zip(data["funnel"], self.funnel, strict=True):
            entry["yield"] = None if step.yield_ is None else round(step.yield_, 4)
        return {**self.status.to_dict(), **data}


OPTION_KEYS = ("provider", "model", "max_units", "repeat", "mode")


def run_details(paths: RunPaths, *, last_events: int = 10) -> RunDetails:
    """Status plus what ``info`` shows: options, funnel with failures by stage, batches by
    state, the last events. Read-only; never takes the lock."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        view = _view(ledger, paths, archived=False, split=True)
        info = ledger.run_info()
        funnel = []
        for index, step in enumerate(view.steps):
            by_stage: Counter[str] = Counter(
                row.stage or "unknown" for row in ledger.iter_failures(index)
            )
            funnel.append(
                StepFunnel(
                    step.name,
                    step.scope,
                    input=step.total,
                    valid=step.valid,
                    pending=step.pending,
                    in_flight=step.in_flight,
                    retrying=step.retrying,
                    failed=step.failed,
                    failed_by_stage=dict(sorted(by_stage.items())),
                )
            )
        batches: dict[str, Counter[str]] = {}
        for batch in ledger.batches():
            name = ledger.steps[batch.step_idx].name
            batches.setdefault(name, Counter())[batch.state.value] += 1
        tail = [
            {"id": e.id, "ts": e.ts, "level": e.level, "tag": e.tag, "message": e.message}
            for e in ledger.recent_events(last_events)
        ]
        options = {k: info.options.get(k) for k in OPTION_KEYS}
        options.update({k: v for k, v in info.options.items() if k not in OPTION_KEYS})
    finally:
        ledger.close()
    return RunDetails(
        status=view,
        snapshot=str(paths.config_dir),
        ledger=str(paths.ledger),
        log=str(paths.log),
        outputs=str(paths.outputs),
        options=options,
        started_at=info.started_at,
        finished_at=info.finished_at,
        funnel=funnel,
        batches={k: dict(sorted(v.items())) for k, v in sorted(batches.items())},
        events=tail,
    )


def run_info(paths: RunPaths) -> RunInfo:
    """The run's stored description (name, mode, provider, model ...), read-only and cheap."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        return ledger.run_info()
    finally:
        ledger.close()


def runner_live(paths: RunPaths) -> bool:
    """Whether a runner drives the run now (it holds the run lock). Only a reader's view:
    the answer may change the instant after it is given."""
    return is_held(paths.root)


def verify_run(paths: RunPaths, *, deep: bool = False) -> VerifyReport:
    """``octopipe verify``: every unit accounted for at every step, read-only; stranded
    units are looked for only when no runner is live."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        return ledger.verify(runner_live=is_held(paths.root), deep=deep)
    finally:
        ledger.close()


def step_index(ledger: RunReader, name: str) -> int:
    """The index of a per-unit step by name; ``UsageError`` naming the choices otherwise."""
    names = [s.name for s in ledger.steps]
    if name not in names:
        raise UsageError(f"no step {name!r} in this run; steps: {', '.join(names)}")
    return names.index(name)


def step_index_of(paths: RunPaths, name: str) -> int:
    """:func:`step_index` of a run's step, read from its store opened read-only."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        return step_index(ledger, name)
    finally:
        ledger.close()
