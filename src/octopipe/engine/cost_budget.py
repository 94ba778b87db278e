"""The run's money: one cost cap, held by every executor of the run, in both modes.

``--max-cost`` (or ``api.realtime.cost_cap_usd``) caps the run, not each mode. What counts is
what was spent -- every priced attempt recorded, the ledger's total when the runner started
included -- plus what is committed: batches still at the provider (not yet collected) at
their estimate, and realtime calls on the wire at what a call costs. One ``CostBudget`` is
made per runner start (``CostBudget.of_run``) and handed to every executor of the run (a
batch run whose stuck step falls back to realtime, a realtime run still collecting the
batches it had submitted); each charges what it records and states what it has committed,
and asks the budget before it spends more:

- realtime starts no new call once spent + committed reaches the cap (``reached``);
- a batch is submitted only if spent + committed + its own estimate stays within the cap
  (``admits``); a batch whose price is unknown cannot be held to a cap (``UNPRICED``: the run
  stops, naming why). A cap on a model with no known price is refused before a run starts
  (``routes.refuse_unpriced_cap``).

Not to be confused with ``core.budget``, the work and time one expression may take. Pure
bookkeeping: no clock, no I/O (``of_run`` reads the ledger's total once).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from octopipe.core.amounts import format_usd
from octopipe.core.steps import CompiledPipeline
from octopipe.store.records import CostTotals


class _CostLedger(Protocol):
    def cost_totals(self) -> CostTotals: ...


class _Run(Protocol):
    """What the budget reads of a run (the runner's ``RunContext``: named structurally, as
    the runner's protocol names this module)."""

    @property
    def ledger(self) -> _CostLedger: ...

    @property
    def compiled(self) -> CompiledPipeline: ...


class Admission(StrEnum):
    """Whether a batch of a given estimate may be submitted."""

    FITS = "fits"
    OVER = "over"  # it would take the run past the cap
    UNPRICED = "unpriced"  # its cost is unknown: no cap can be held


@dataclass
class CostBudget:
    cap: float | None
    """Dollars the run may spend; ``None``: no cap."""
    spent: float = 0.0
    """Known cost of every attempt recorded (unknown costs are not guessed)."""
    open_batches_usd: float = 0.0
    """Batches not yet collected, at their estimate (kept by the batch executor)."""
    calls_usd: float = 0.0
    """Realtime calls in flight, at what a call costs (kept by the realtime executor)."""
    unpriced_calls: int = 0
    """Attempts recorded whose cost is unknown: ``spent`` is then only what the others cost."""

    @classmethod
    def of_run(cls, ctx: _Run, max_cost_usd: float | None) -> CostBudget:
        """The budget of the run ``ctx`` drives: ``max_cost_usd`` (``--max-cost``) over the
        config's ``api.realtime.cost_cap_usd``; spent: what the ledger has recorded."""
        cap = max_cost_usd or ctx.compiled.pipeline.config.api.realtime.cost_cap_usd
        totals = ctx.ledger.cost_totals()
        return cls(cap, totals.known_usd, unpriced_calls=totals.unknown_cost_attempts)

    # --- what the executors tell it ----------------------------------------------------------

    def charge(self, usd: float, unpriced: int = 0) -> None:
        """``usd`` more was spent (recorded in the ledger), and ``unpriced`` more attempts of
        unknown cost were recorded."""
        self.spent += usd
        self.unpriced_calls += unpriced

    def hold_open_batches(self, usd: float) -> None:
        """The estimate of every batch not yet collected is ``usd``."""
        self.open_batches_usd = usd

    def hold_batch(self, usd: float) -> None:
        """One more batch, estimated at ``usd``, is committed."""
        self.open_batches_usd += usd

    def hold_calls(self, usd: float) -> None:
        """The realtime calls in flight are expected to cost ``usd``."""
        self.calls_usd = usd

    # --- what they ask ------------------------------------------------------------------------

    @property
    def committed(self) -> float:
        return self.open_batches_usd + self.calls_usd

    def projected(self, more: float = 0.0) -> float:
        return self.spent + self.committed + more

    def reached(self) -> bool:
        """Whether spent + committed has reached the cap (no new realtime call)."""
        return self.cap is not None and self.projected() >= self.cap

    def admits(self, estimate: float | None) -> Admission:
        """Whether a batch estimated at ``estimate`` (``None``: unknown) may be submitted."""
        if self.cap is None:
            return Admission.FITS
        if estimate is None:
            return Admission.UNPRICED
        return Admission.FITS if self.projected(estimate) <= self.cap else Admission.OVER

    # --- why the run stops ----------------------------------------------------------------------

    def reached_reason(self) -> str:
        return f"cost cap {format_usd(self.cap)} reached (spent {format_usd(self.spent)})"

    def over_reason(self, estimate: float) -> str:
        return (
            f"cost cap {format_usd(self.cap)} reached (spent {format_usd(self.spent)}, "
            f"next batch est. {format_usd(estimate)})"
        )

    def unpriced_reason(self) -> str:
        return (
            f"--max-cost {format_usd(self.cap)} cannot be held: the registry has no batch "
            "price for this model (add it to the registry or run without a cap)"
        )


__all__ = ["Admission", "CostBudget"]
