"""Read-only views of runs for ``status``, ``info``, ``ps`` and the TUI.

Readers open the ledger read-only and never take the run lock, so they never slow or block the
runner. Liveness is the lock: a run whose stored status is ``running`` while nobody holds its
lock is shown as ``detached``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from octopipe.core.states import BATCH_TERMINAL, DerivedStatus, UnitStepState, derive_status
from octopipe.engine.paths import RunPaths, iter_runs
from octopipe.store.ledger import Ledger
from octopipe.store.lock import holder_pid, is_held
from octopipe.store.records import RunInfo

FAILED_STATES = (UnitStepState.FAILED, UnitStepState.EXHAUSTED)


@dataclass
class StepStatus:
    name: str
    scope: str
    pending: int = 0
    in_flight: int = 0
    valid: int = 0
    failed: int = 0  # waiting for another attempt
    exhausted: int = 0  # terminal failures
    max_iterations: int = 0  # units whose loop reached the step's max_iterations

    @property
    def total(self) -> int:
        return self.pending + self.in_flight + self.valid + self.failed + self.exhausted


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
    cost_usd: float
    unknown_cost_attempts: int
    input_tokens: int
    output_tokens: int
    steps: list[StepStatus] = field(default_factory=list)
    archived: bool = False
    path: str = ""
    batch_counts: dict[str, int] = field(default_factory=dict)  # state -> batches
    open_batches: list[dict[str, Any]] = field(default_factory=list)  # not yet collected

    @property
    def progress(self) -> float:
        """Share of units that reached a terminal state at the last step."""
        if not self.steps or not self.units:
            return 0.0
        last = self.steps[-1]
        done = last.valid + last.exhausted
        return min(1.0, done / max(last.total, 1))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["progress"] = round(self.progress, 4)
        return data


def run_status(paths: RunPaths, archived: bool = False) -> RunStatusView:
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        return _view(ledger, paths, archived)
    finally:
        ledger.close()


def _view(ledger: Ledger, paths: RunPaths, archived: bool) -> RunStatusView:
    info = ledger.run_info()
    counts = ledger.counts()
    hits = ledger.max_iteration_hits()
    steps = []
    for index, step in enumerate(ledger.steps):
        by_state = counts.get(index, {})
        steps.append(
            StepStatus(
                step.name,
                step.scope,
                **{s.value: by_state.get(s, 0) for s in UnitStepState},
                max_iterations=hits.get(index, 0),
            )
        )
    live = is_held(paths.root)
    failed = sum(s.exhausted for s in steps)
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
        cost_usd=round(costs.known_usd, 6),
        unknown_cost_attempts=costs.unknown_cost_attempts,
        input_tokens=costs.input_tokens,
        output_tokens=costs.output_tokens,
        steps=steps,
        archived=archived,
        path=str(paths.root),
        **_batches(ledger),
    )


def _batches(ledger: Ledger) -> dict[str, Any]:
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
    views = []
    for paths, archived in iter_runs(runs_dir, include_archived):
        views.append(run_status(paths, archived))
    order = {DerivedStatus.RUNNING.value: 0, DerivedStatus.DETACHED.value: 1}
    return sorted(views, key=lambda v: (order.get(v.status, 2), v.name))


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
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        view = _view(ledger, paths, archived=False)
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
                    retrying=step.failed,
                    failed=step.exhausted,
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
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        return ledger.run_info()
    finally:
        ledger.close()
