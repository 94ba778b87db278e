"""Read-only views of runs for ``status``, ``info``, ``ps`` and the TUI.

Readers open the ledger read-only and never take the run lock, so they never slow or block the
runner. Liveness is the lock: a run whose stored status is ``running`` while nobody holds its
lock is shown as ``detached``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from octopipe.core.states import DerivedStatus, UnitStepState, derive_status
from octopipe.engine.paths import RunPaths, iter_runs
from octopipe.store.ledger import Ledger
from octopipe.store.lock import holder_pid, is_held

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
    steps = []
    for index, step in enumerate(ledger.steps):
        by_state = counts.get(index, {})
        steps.append(
            StepStatus(
                step.name, step.scope, **{s.value: by_state.get(s, 0) for s in UnitStepState}
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
    )


def list_runs(runs_dir: Path, include_archived: bool = False) -> list[RunStatusView]:
    views = []
    for paths, archived in iter_runs(runs_dir, include_archived):
        views.append(run_status(paths, archived))
    order = {DerivedStatus.RUNNING.value: 0, DerivedStatus.DETACHED.value: 1}
    return sorted(views, key=lambda v: (order.get(v.status, 2), v.name))
