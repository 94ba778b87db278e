"""The run's one cost budget (``engine.cost_budget``), as tables: what realtime and batch may
spend, given what was spent and what is committed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from octopipe.engine.combined import CombinedExecutor
from octopipe.engine.cost_budget import Admission, CostBudget


def budget(
    cap: float | None, spent: float = 0.0, batches: float = 0.0, calls: float = 0.0
) -> CostBudget:
    b = CostBudget(cap, spent)
    b.hold_open_batches(batches)
    b.hold_calls(calls)
    return b


@pytest.mark.parametrize(
    ("cap", "spent", "batches", "calls", "estimate", "admission"),
    [
        (None, 5.0, 5.0, 5.0, 100.0, Admission.FITS),  # no cap: anything goes
        (None, 0.0, 0.0, 0.0, None, Admission.FITS),  # ... even an unknown price
        (1.0, 0.0, 0.0, 0.0, None, Admission.UNPRICED),
        (1.0, 0.2, 0.3, 0.0, 0.5, Admission.FITS),  # exactly at the cap still fits
        (1.0, 0.2, 0.3, 0.0, 0.51, Admission.OVER),
        (1.0, 0.0, 0.9, 0.0, 0.2, Admission.OVER),  # open batches count at their estimate
        (1.0, 0.0, 0.0, 0.9, 0.2, Admission.OVER),  # and realtime calls in flight
        (1.0, 0.9, 0.0, 0.0, 0.2, Admission.OVER),
    ],
)
def test_a_batch_is_admitted_only_within_the_cap(
    cap: float | None,
    spent: float,
    batches: float,
    calls: float,
    estimate: float | None,
    admission: Admission,
) -> None:
    assert budget(cap, spent, batches, calls).admits(estimate) is admission


@pytest.mark.parametrize(
    ("cap", "spent", "batches", "calls", "reached"),
    [
        (None, 9.0, 9.0, 9.0, False),
        (1.0, 0.5, 0.0, 0.0, False),
        (1.0, 1.0, 0.0, 0.0, True),  # reached at the cap: no new call
        (1.0, 0.5, 0.5, 0.0, True),
        (1.0, 0.5, 0.0, 0.5, True),
        (1.0, 0.5, 0.2, 0.2, False),
    ],
)
def test_realtime_stops_starting_calls_once_the_cap_is_reached(
    cap: float | None, spent: float, batches: float, calls: float, reached: bool
) -> None:
    assert budget(cap, spent, batches, calls).reached() is reached


def test_what_the_executors_tell_it_adds_up() -> None:
    b = CostBudget(2.0, 0.25)
    b.hold_open_batches(0.5)
    b.hold_batch(0.125)  # a batch submitted since the open ones were counted
    b.hold_calls(0.0625)
    b.charge(0.25)
    assert (b.spent, b.open_batches_usd, b.calls_usd) == (0.5, 0.625, 0.0625)
    assert b.committed == 0.6875 and b.projected(0.25) == 1.4375
    b.hold_open_batches(0.0)  # the batches were collected (and charged)
    b.hold_calls(0.0)
    assert b.projected() == 0.5


def test_the_reasons_name_the_cap_the_spending_and_the_estimate() -> None:
    b = CostBudget(0.5, 0.4567)
    assert b.reached_reason() == "cost cap $0.50 reached (spent $0.457)"
    assert b.over_reason(0.125) == "cost cap $0.50 reached (spent $0.457, next batch est. $0.125)"
    assert b.unpriced_reason() == (
        "--max-cost $0.50 cannot be held: the registry has no batch price for this model "
        "(add it to the registry or run without a cap)"
    )


def test_a_run_budget_starts_from_what_the_ledger_recorded() -> None:
    def ctx(cap: float | None) -> Any:
        config = SimpleNamespace(api=SimpleNamespace(realtime=SimpleNamespace(cost_cap_usd=cap)))
        totals = SimpleNamespace(known_usd=0.75, unknown_cost_attempts=2)
        ledger = SimpleNamespace(cost_totals=lambda: totals)
        return SimpleNamespace(
            compiled=SimpleNamespace(pipeline=SimpleNamespace(config=config)), ledger=ledger
        )

    # the config's cap; the calls of unknown cost recorded so far are counted, not priced
    assert CostBudget.of_run(ctx(2.0), None) == CostBudget(2.0, 0.75, unpriced_calls=2)
    assert CostBudget.of_run(ctx(2.0), 1.0) == CostBudget(1.0, 0.75, unpriced_calls=2)
    assert CostBudget.of_run(ctx(None), None) == CostBudget(None, 0.75, unpriced_calls=2)


class Part:
    def __init__(self, budget: CostBudget, batches: dict[str, int]) -> None:
        self.budget = budget
        self.batches = batches

    async def pump(self) -> bool:
        return False

    def busy(self) -> bool:
        return False

    async def stop(self) -> None:
        pass

    def batch_summary(self) -> dict[str, int]:
        return self.batches


def test_a_combined_executor_holds_one_budget_for_all_its_parts() -> None:
    shared = CostBudget(1.0)
    combined = CombinedExecutor(shared, (Part(shared, {"submitted": 2}), Part(shared, {})))
    combined.add(Part(shared, {"submitted": 1, "completed": 1}))
    assert combined.batch_summary() == {"submitted": 3, "completed": 1}
    with pytest.raises(ValueError, match="one cost budget"):
        combined.add(Part(CostBudget(1.0), {}))
    assert len(combined.parts) == 3
