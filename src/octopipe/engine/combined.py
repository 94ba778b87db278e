"""Several LLM executors driven as one: a batch run whose stuck step fell back to realtime, or
a run switched to realtime that still collects the batches it had submitted.

Every part holds the same ``CostBudget`` (one cost cap for the run: what each part spent and
what each has committed count against it); a part with another budget is refused.
"""

from __future__ import annotations

from octopipe.engine.cost_budget import CostBudget
from octopipe.engine.runner import LLMExecutor


class CombinedExecutor:
    """``LLMExecutor`` over ``parts``, pumped in order; parts may be added while running."""

    def __init__(self, budget: CostBudget, parts: tuple[LLMExecutor, ...] = ()) -> None:
        self.budget = budget
        self.parts: list[LLMExecutor] = []
        for part in parts:
            self.add(part)

    def add(self, part: LLMExecutor) -> None:
        if part.budget is not self.budget:
            raise ValueError("every executor of a run must hold the run's one cost budget")
        self.parts.append(part)

    async def pump(self) -> bool:
        progressed = False
        for part in list(self.parts):
            progressed |= await part.pump()
        return progressed

    def busy(self) -> bool:
        return any(part.busy() for part in self.parts)

    async def stop(self) -> None:
        for part in list(self.parts):
            await part.stop()

    def batch_summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in self.parts:
            for state, count in part.batch_summary().items():
                out[state] = out.get(state, 0) + count
        return out
