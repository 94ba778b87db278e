"""What one realtime call produced, as the executor hands it to the ledger.

``StepTarget`` says where a step's calls go; ``Finished`` is one call's outcome (the attempt
record, the unit's new fields or its failure, whether that failure ends the unit, and the
provider error that ended the call, if any). The builders turn every way a call can end -- an
answer, a provider error, a malformed answer that was billed, a prompt that would not render,
a bug -- into a ``Finished``, so nothing about a call is lost: the prompt and raw answer of
every failure, the usage and cost of every answer. Answers and provider errors are judged by
``core.judge``, exactly as batch results are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from octopipe.core.costs import TIERS, Tier
from octopipe.core.judge import (
    Attempts,
    PriceList,
    Verdict,
    judge_answer,
    judge_error,
    judge_unreadable,
)
from octopipe.core.steps import CompiledStep, StepFailure
from octopipe.engine.attempts import attempt_of
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
    price: PriceList
    """The step's answers at realtime rates, in the tier requested; an answer another tier
    served is priced in that one (``served_tier``)."""
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
    terminal: bool = False
    """A failure that ends the unit (``core.judge.Attempts``): recorded as ``exhausted``."""


def attempt_record(
    target: StepTarget,
    outcome: Outcome,
    started: str,
    *,
    stage: Stage | None = None,
    errors: list[Any] | None = None,
) -> AttemptRecord:
    """The attempt record of a call that got no answer and was not judged (a prompt that
    would not render, a bug): nothing used, nothing paid."""
    return AttemptRecord(
        outcome=outcome,
        mode="realtime",
        provider=target.provider,
        model=target.model,
        stage=stage,
        errors=errors or [],
        cost_usd=0.0,
        started_at=started,
        finished_at=utc_now(),
    )


def answered(
    target: StepTarget,
    unit: ClaimedUnit,
    prompt: str,
    started: str,
    response: LLMResponse,
    attempts: Attempts,
) -> Finished:
    """The provider answered: the judge's verdict on the answer, priced at realtime rates in
    the tier that served it."""
    price = target.price.in_tier(served_tier(target, response))
    verdict = judge_answer(
        target.cstep, unit.record, response.text, response.usage, price, attempts
    )
    latency_ms = round(response.latency_s * 1000)
    attempt = _attempt_of(target, verdict, prompt, started, latency_ms)
    return Finished(
        target, unit, attempt, verdict.delta, verdict.failure, answered=True,
        terminal=verdict.terminal,
    )  # fmt: skip


def provider_failure(
    target: StepTarget,
    unit: ClaimedUnit,
    prompt: str,
    started: str,
    exc: ProviderError,
    attempts: Attempts,
) -> Finished:
    """The call ended with a provider error: no answer, nothing used (stage ``provider``)."""
    verdict = judge_error(type(exc).__name__, exc.status, exc.message, exc.retryable, attempts)
    attempt = _attempt_of(target, verdict, prompt, started)
    return Finished(
        target, unit, attempt, failure=verdict.failure, error=exc, terminal=verdict.terminal
    )


def malformed_failure(
    target: StepTarget,
    unit: ClaimedUnit,
    prompt: str,
    started: str,
    exc: MalformedResponse,
    attempts: Attempts,
) -> Finished:
    """A billed answer the adapter could not read: a parse failure of the unit, with the body
    as the raw response and the usage priced."""
    verdict = judge_unreadable(
        exc.raw,
        exc.usage,
        exc.message,
        type(exc).__name__,
        target.price.in_tier(served_tier(target, None)),
        attempts,
    )
    attempt = _attempt_of(target, verdict, prompt, started)
    return Finished(
        target, unit, attempt, failure=verdict.failure, error=exc, answered=True,
        terminal=verdict.terminal,
    )  # fmt: skip


def _attempt_of(
    target: StepTarget, verdict: Verdict, prompt: str, started: str, latency_ms: int | None = None
) -> AttemptRecord:
    return attempt_of(
        verdict,
        mode="realtime",
        provider=target.provider,
        model=target.model,
        prompt=prompt,
        started_at=started,
        latency_ms=latency_ms,
    )


def internal_failure(
    target: StepTarget, unit: ClaimedUnit, started: str, exc: BaseException, attempts: Attempts
) -> Finished:
    """Something outside every contract broke the call: a retryable failure of the unit."""
    message = f"internal error {type(exc).__name__}: {exc}"[:300]
    error = AdapterError(message, provider=target.provider)
    errors = [{"type": type(exc).__name__, "message": message}]
    attempt = attempt_record(target, "error", started, stage="provider", errors=errors)
    failure = StepFailure("provider", message, tuple(errors), retryable=True)
    terminal = attempts.ended_by(failure)
    return Finished(target, unit, attempt, failure=failure, error=error, terminal=terminal)


def render_failure(
    target: StepTarget, unit: ClaimedUnit, started: str, failure: StepFailure
) -> Finished:
    """The prompt could not be rendered: the unit fails at ``render`` before any call (a
    template error renders the same way again: never retried)."""
    attempt = attempt_record(target, "failed", started, stage="render", errors=list(failure.errors))
    return Finished(target, unit, attempt, failure=failure, terminal=not failure.retryable)


__all__ = [
    "Finished",
    "StepTarget",
    "answered",
    "attempt_record",
    "internal_failure",
    "malformed_failure",
    "provider_failure",
    "render_failure",
]
