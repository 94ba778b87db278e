"""A verdict (``core.judge``) as the ledger's attempt record, in either mode.

The judge says what an attempt came to; this adds where and when it ran (mode, provider,
model, start and end, latency, batch) and the prompt, kept for every attempt but a valid one.
"""

from __future__ import annotations

from typing import cast

from octopipe.core.judge import Attempts, Verdict
from octopipe.store.codec import utc_now
from octopipe.store.records import (
    AttemptMode,
    AttemptRecord,
    ClaimedUnit,
    InFlightUnit,
    Outcome,
    Stage,
)


def attempt_of(
    verdict: Verdict,
    *,
    mode: AttemptMode,
    provider: str,
    model: str,
    prompt: str | None,
    started_at: str | None,
    latency_ms: int | None = None,
    batch_local_id: str | None = None,
    finished_at: str | None = None,
) -> AttemptRecord:
    """The attempt record of ``verdict``; ``prompt`` is stored only if ``keeps_prompt``.
    ``finished_at``: when it ended, if the caller read the clock already (``None``: now)."""
    tokens = verdict.tokens
    return AttemptRecord(
        outcome=cast(Outcome, verdict.outcome),
        mode=mode,
        provider=provider,
        model=model,
        stage=cast("Stage | None", verdict.stage),
        errors=list(verdict.errors),
        request=prompt if verdict.keeps_prompt else None,
        response=verdict.response,
        input_tokens=tokens.input_tokens,
        output_tokens=tokens.output_tokens,
        cached_tokens=tokens.cached_tokens,
        cost_usd=verdict.cost_usd,
        tier=verdict.tier,
        standard_cost_usd=verdict.standard_cost_usd,
        latency_ms=latency_ms,
        started_at=started_at,
        finished_at=finished_at or utc_now(),
        batch_local_id=batch_local_id,
    )


def attempts_of(unit: ClaimedUnit | InFlightUnit, allowed: int) -> Attempts:
    """The attempt budget of a claimed (or in-flight) unit."""
    return Attempts(unit.budget_used, allowed)


__all__ = ["attempt_of", "attempts_of"]
