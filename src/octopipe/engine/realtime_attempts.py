"""What one realtime call produced, as the executor hands it to the ledger.

``StepTarget`` says where a step's calls go; ``Finished`` is one call's outcome (the attempt
record, the unit's new fields or its failure, and the provider error that ended the call, if
any). The builders turn every way a call can end -- an answer, a provider error, a malformed
answer that was billed, a bug -- into a ``Finished``, so nothing about a call is lost: the
prompt and raw answer of every failure, the usage and cost of every answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from octopipe.core.costs import TIERS, AttemptCost, Tier, attempt_cost
from octopipe.core.registry import Registry
from octopipe.core.steps import CompiledStep, StepFailure
from octopipe.engine.outage import ProviderHealth
from octopipe.engine.pacing import Pacer
from octopipe.errors import AdapterError, MalformedResponse, ProviderError
from octopipe.providers.base import LLMResponse, RealtimeProvider
from octopipe.store.codec import utc_now
from octopipe.store.records import AttemptRecord, ClaimedUnit, Outcome, Stage


@dataclass
class StepTarget:
    """Where one LLM step's calls go and how they are paced, priced and watched."""

    index: int
    cstep: CompiledStep
    provider: str
    model: str
    client: RealtimeProvider
    pacer: Pacer
    request_defaults: dict[str, Any]
    price_provider: str
    health: ProviderHealth = field(default_factory=ProviderHealth)
    tier: Tier = "standard"
    """The tier requested for this step's calls (``flex`` with ``run --flex``)."""


def served_tier(target: StepTarget, response: LLMResponse | None) -> Tier:
    """The tier that served a call: the one the answer names, else the one requested."""
    named = getattr(response, "service_tier", None)
    for tier in TIERS:
        if named == tier:
            return tier
    if named == "default":  # OpenAI's name for its standard tier
        return "standard"
    return target.tier


@dataclass
class Finished:
    target: StepTarget
    unit: ClaimedUnit
    attempt: AttemptRecord
    delta: dict[str, Any] | None = None
    failure: StepFailure | None = None
    error: ProviderError | None = None
    """The provider error that ended the call, if one did (it decides what the unit pays)."""
    answered: bool = False
    """The provider answered (whatever the answer's worth): proof that it is up."""


def attempt_record(
    target: StepTarget,
    outcome: Outcome,
    started: str,
    *,
    response: LLMResponse | None = None,
    request: str | None = None,
    cost: AttemptCost | None = None,
    stage: Stage | None = None,
    errors: list[Any] | None = None,
) -> AttemptRecord:
    usage = response.usage if response is not None else None
    answered = response is not None and cost is not None
    return AttemptRecord(
        outcome=outcome,
        mode="realtime",
        provider=target.provider,
        model=target.model,
        stage=stage,
        errors=errors or [],
        request=request,
        response=response.text if response is not None else None,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        cached_tokens=usage.cached_input_tokens if usage else 0,
        cost_usd=cost.cost_usd if answered and cost is not None else 0.0,
        tier=cost.tier if answered and cost is not None else None,
        standard_cost_usd=cost.standard_usd if answered and cost is not None else 0.0,
        latency_ms=round(response.latency_s * 1000) if response is not None else None,
        started_at=started,
        finished_at=utc_now(),
    )


def provider_failure(
    target: StepTarget, unit: ClaimedUnit, prompt: str, started: str, exc: ProviderError
) -> Finished:
    """The call ended with a provider error: no answer, nothing used (stage ``provider``)."""
    errors = [{"type": type(exc).__name__, "status": exc.status, "message": exc.message}]
    failure = StepFailure("provider", exc.message, tuple(errors), retryable=exc.retryable)
    attempt = attempt_record(
        target, "error", started, stage="provider", errors=errors, request=prompt
    )
    return Finished(target, unit, attempt, failure=failure, error=exc)


def malformed_failure(
    registry: Registry,
    target: StepTarget,
    unit: ClaimedUnit,
    prompt: str,
    started: str,
    exc: MalformedResponse,
) -> Finished:
    """A billed answer the adapter could not read: a parse failure of the unit, with the body
    as the raw response and the usage priced."""
    errors = [{"type": type(exc).__name__, "message": exc.message}]
    usage = exc.usage
    cost = (
        attempt_cost(
            registry,
            target.price_provider,
            target.model,
            usage,
            served_tier(target, None),
            datetime.now(UTC),
        )
        if usage is not None
        else AttemptCost(served_tier(target, None), 0.0, 0.0)
    )
    attempt = AttemptRecord(
        outcome="failed",
        mode="realtime",
        provider=target.provider,
        model=target.model,
        stage="parse",
        errors=errors,
        request=prompt,
        response=exc.raw,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        cached_tokens=usage.cached_input_tokens if usage else 0,
        cost_usd=cost.cost_usd,
        tier=cost.tier,
        standard_cost_usd=cost.standard_usd,
        started_at=started,
        finished_at=utc_now(),
    )
    failure = StepFailure("parse", exc.message, tuple(errors), retryable=True)
    return Finished(target, unit, attempt, failure=failure, error=exc, answered=True)


def check_failure(
    target: StepTarget,
    unit: ClaimedUnit,
    prompt: str,
    started: str,
    response: LLMResponse,
    cost: AttemptCost,
    exc: Exception,
) -> Finished:
    """Checking a paid answer raised (a bug): the unit fails at ``parse`` with the answer kept."""
    failure = StepFailure("parse", f"checking the answer failed: {exc!r}"[:300])
    errors = [{"type": type(exc).__name__, "message": failure.message}]
    attempt = attempt_record(
        target, "failed", started, response=response, request=prompt, cost=cost,
        stage="parse", errors=errors,
    )  # fmt: skip
    return Finished(target, unit, attempt, failure=failure, answered=True)


def internal_failure(
    target: StepTarget, unit: ClaimedUnit, started: str, exc: BaseException
) -> Finished:
    """Something outside every contract broke the call: a retryable failure of the unit."""
    message = f"internal error {type(exc).__name__}: {exc}"[:300]
    error = AdapterError(message, provider=target.provider)
    errors = [{"type": type(exc).__name__, "message": message}]
    attempt = attempt_record(target, "error", started, stage="provider", errors=errors)
    failure = StepFailure("provider", message, tuple(errors), retryable=True)
    return Finished(target, unit, attempt, failure=failure, error=error)


__all__ = [
    "Finished",
    "StepTarget",
    "attempt_record",
    "check_failure",
    "internal_failure",
    "malformed_failure",
    "provider_failure",
]
