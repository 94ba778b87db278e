"""Several LLM executors driven as one: a batch run whose stuck step fell back to realtime, or
a run switched to realtime that still collects the batches it had submitted."""

from __future__ import annotations

from typing import Any

from octopipe.engine.realtime import RealtimeExecutor


class CombinedExecutor:
    """``LLMExecutor`` over ``parts``, pumped in order; parts may be added while running."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts: list[Any] = []
        self.realtime: RealtimeExecutor | None = None
        for part in parts:
            self.add(part)

    def add(self, part: Any) -> None:
        self.parts.append(part)
        if isinstance(part, RealtimeExecutor):
            self.realtime = part
        part.committed_elsewhere = lambda: self._elsewhere(part)

    def _elsewhere(self, part: Any) -> float:
        """What the other parts spent since ``part`` started, plus their open batches at their
        estimate: so one cost cap holds for the whole run."""
        others = [p for p in self.parts if p is not part]
        opened = sum(p._in_flight_estimate() for p in others if hasattr(p, "_in_flight_estimate"))
        return max(0.0, self.spent - part.spent) + opened

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

    @property
    def spent(self) -> float:
        """Spent before this start, plus what each part added since."""
        base = min((p.base_spent for p in self.parts), default=0.0)
        return base + sum(p.spent - p.base_spent for p in self.parts)

    @property
    def unpriced_calls(self) -> int:
        """Calls of unknown cost: those before this start, plus what each part added since."""
        counts = [getattr(p, "unpriced_calls", 0) for p in self.parts]
        return max(counts, default=0)

    def batch_summary(self) -> dict[str, int]:
        for part in self.parts:
            summary = getattr(part, "batch_summary", None)
            if summary is not None:
                return dict(summary())
        return {}
