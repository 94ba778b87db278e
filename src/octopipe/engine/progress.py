"""Progress of a run for displays: per-step counts, rates, ETA and cost so far.

The runner calls its ``progress`` callback with a ``ProgressSnapshot`` at most once per
``PROGRESS_EVERY_S``; ``ProgressTracker`` turns successive snapshots into rates and ETAs. No
rendering here: the CLI draws it (a live table on a terminal, a log line otherwise).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from octopipe.core.states import UnitStepState

PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class StepProgress:
    name: str
    scope: str
    pending: int
    in_flight: int
    valid: int
    retrying: int
    failed: int
    rate_per_s: float = 0.0
    eta_s: float | None = None

    @property
    def total(self) -> int:
        return self.pending + self.in_flight + self.valid + self.retrying + self.failed

    @property
    def done(self) -> int:
        return self.valid + self.failed


@dataclass(frozen=True)
class ProgressSnapshot:
    elapsed_s: float
    steps: tuple[StepProgress, ...]
    cost_usd: float | None = None
    batches: dict[str, int] = field(default_factory=dict)  # open batches by state
    unknown_cost_calls: int = 0
    """Calls whose price is unknown: ``cost_usd`` is then only what the others cost."""


def snapshot_steps(
    names: list[tuple[str, str]], counts: dict[int, dict[UnitStepState, int]]
) -> list[StepProgress]:
    out = []
    for index, (name, scope) in enumerate(names):
        c = counts.get(index, {})
        out.append(
            StepProgress(
                name,
                scope,
                c.get(UnitStepState.PENDING, 0),
                c.get(UnitStepState.IN_FLIGHT, 0),
                c.get(UnitStepState.VALID, 0),
                c.get(UnitStepState.FAILED, 0),
                c.get(UnitStepState.EXHAUSTED, 0),
            )
        )
    return out


@dataclass
class ProgressTracker:
    """Rates over a sliding window of recent snapshots (per step, units done per second)."""

    window_s: float = 30.0
    history: list[tuple[float, tuple[int, ...]]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def update(
        self,
        steps: list[StepProgress],
        cost_usd: float | None,
        batches: dict[str, int] | None = None,
        unknown_cost_calls: int = 0,
    ) -> ProgressSnapshot:
        now = time.monotonic()
        done = tuple(s.done for s in steps)
        self.history.append((now, done))
        while len(self.history) > 2 and now - self.history[0][0] > self.window_s:
            self.history.pop(0)
        then, before = self.history[0]
        span = now - then
        rated = []
        for step, was in zip(steps, before, strict=False):
            rate = (step.done - was) / span if span > 0 else 0.0
            left = step.pending + step.in_flight + step.retrying
            eta = left / rate if rate > 0 else None
            rated.append(StepProgress(**{**step.__dict__, "rate_per_s": rate, "eta_s": eta}))
        return ProgressSnapshot(
            now - self.started, tuple(rated), cost_usd, dict(batches or {}), unknown_cost_calls
        )
