"""The one judge: what an answer (or its absence) is worth to the unit that asked, in any mode.

A realtime call, a line of a batch's results and, later, an answer served again from a
response cache all end the same way, here: the answer is parsed, repaired and checked
(``CompiledStep.check_answer``), priced from the usage it reports (a ``Price``: the
registry's rates for the mode through ``costs.cost_usd``, or ``no_charge`` for an answer
already paid for), and becomes a ``Verdict``: valid with the fields it adds, or failed with
its stage and errors -- and whether that failure ends the unit, given its attempt budget
(``Attempts``). A request the provider did not answer is judged by ``judge_error``, an answer
billed but unreadable by ``judge_unreadable``, a request missing from a batch's results by
``judge_missing``.

Guarantees: the judge never raises for a unit (checking an answer that raises fails the unit
at ``parse`` with the answer kept, not retried: the same answer would raise again); a verdict
carries everything the attempt record needs (outcome, stage, errors, raw answer, tokens,
cost), so the executors only add where and when the call ran. Pure: no clock, no I/O; what
the unit's fate is at the provider's hands (a transient outage parks it, see
``engine.outage``) is not decided here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from octopipe.core.costs import (
    AttemptCost,
    PriceCatalog,
    Tier,
    TokenCounts,
    TokenUsage,
    attempt_cost,
    cache_writes_of,
    cached_tokens_of,
)
from octopipe.core.steps import CompiledStep, StepFailure

VerdictOutcome = Literal["valid", "failed", "error"]
"""``valid``; ``failed``: answered, but the answer failed (parse, schema, rules); ``error``: no
answer (the provider refused or failed the request)."""

Price = Callable[[TokenUsage], AttemptCost]
"""What an answer with this usage cost: its tier, its dollars and the same usage at the
standard price (``None`` where unknown; see ``PriceList``)."""

NO_TOKENS = TokenCounts(0, 0, 0)


@dataclass(frozen=True)
class PriceList:
    """The price of one route's answers in one tier (``costs.attempt_cost``), at the time of
    the request: ``at`` (a batch's submission), or the moment it is priced when ``None``.

    With ``at`` set, the price of each distinct usage (its four token counts are all a price
    reads) is computed once and then reused: a batch's answers, all priced as of its
    submission, share a few hundred usages among tens of thousands of lines."""

    catalog: PriceCatalog | None
    provider: str
    model: str
    tier: Tier
    at: datetime | None = None
    _memo: dict[tuple[int, int, int, int], AttemptCost] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    MEMO_SIZE: ClassVar[int] = 4096

    def __call__(self, usage: TokenUsage) -> AttemptCost:
        if self.at is None:
            return attempt_cost(
                self.catalog, self.provider, self.model, usage, self.tier, datetime.now(UTC)
            )
        key = (
            usage.input_tokens, usage.output_tokens, cached_tokens_of(usage),
            cache_writes_of(usage),
        )  # fmt: skip
        memo = self._memo
        found = memo.get(key)
        if found is None:
            found = attempt_cost(self.catalog, self.provider, self.model, usage, self.tier, self.at)
            if len(memo) >= self.MEMO_SIZE:
                memo.clear()
            memo[key] = found
        return found

    def in_tier(self, tier: Tier) -> PriceList:
        """The same price list for answers another tier served (flex answered by standard)."""
        return self if tier == self.tier else replace(self, tier=tier)

    def requested_at(self, at: datetime | None) -> PriceList:
        """The same price list for requests made at ``at`` (``None``: priced when judged)."""
        return replace(self, at=at)


def no_charge(usage: TokenUsage) -> AttemptCost:
    """The price of an answer paid for before (served again from storage): nothing."""
    return AttemptCost("standard", 0.0, 0.0)


@dataclass(frozen=True)
class Attempts:
    """A unit's attempt budget at one step: ``used`` attempts made since its last manual
    retry (this one not counted), ``allowed`` in all (``validation_retry.max_attempts``)."""

    used: int
    allowed: int

    @property
    def number(self) -> int:
        """This attempt's place in the budget (1 for the first)."""
        return self.used + 1

    def ended_by(self, failure: StepFailure) -> bool:
        """Whether ``failure`` ends the unit: not retryable, or the budget's last attempt."""
        return not failure.retryable or self.number >= self.allowed


@dataclass(slots=True)
class Verdict:
    """What one attempt came to. ``errors`` is what the attempt record keeps: the failure's
    errors, or the warnings of a valid answer.

    Treat it as immutable; not ``frozen`` for the same reason as ``AttemptRecord`` (one is
    built per judged answer, and a frozen init costs several times a plain one)."""

    outcome: VerdictOutcome
    delta: dict[str, Any] | None = None
    failure: StepFailure | None = None
    terminal: bool = False
    """A failure that ends the unit (``exhausted``); always false for a valid answer."""
    errors: tuple[dict[str, Any], ...] = ()
    response: str | None = None
    """The raw answer exactly as received (``None``: the provider gave none)."""
    tokens: TokenCounts = NO_TOKENS
    cost_usd: float | None = 0.0
    """``None``: the answer's price is unknown (never a guess)."""
    tier: Tier | None = None
    """The tier that served the answer (``None``: no answer was served)."""
    standard_cost_usd: float | None = 0.0
    """The same usage at the standard price (``cost_usd`` minus this: what the tier saved)."""

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def stage(self) -> str | None:
        return self.failure.stage if self.failure is not None else None

    @property
    def keeps_prompt(self) -> bool:
        """Whether the attempt record keeps the prompt: for every attempt but a valid one (a
        failure is inspected with what was asked)."""
        return self.outcome != "valid"


def judge_answer(
    step: CompiledStep,
    record: Mapping[str, Any],
    text: str,
    usage: TokenUsage,
    price: Price,
    attempts: Attempts,
) -> Verdict:
    """The verdict on ``text``, the answer to ``step`` for the unit whose input is ``record``,
    which used ``usage`` (priced by ``price``)."""
    tokens = _tokens(usage)
    paid = price(usage)
    money = (paid.cost_usd, paid.tier, paid.standard_usd)
    try:
        result = step.check_answer(text, record)
    except Exception as exc:  # a bug: the answer is paid for, keep it and fail the unit on it
        failure = StepFailure("parse", f"checking the answer failed: {exc!r}"[:300])
        errors = ({"type": type(exc).__name__, "message": failure.message},)
        terminal = attempts.ended_by(failure)  # not retryable: the same answer raises again
        return Verdict("failed", None, failure, terminal, errors, text, tokens, *money)
    if result.failure is None:
        return Verdict("valid", result.delta, None, False, result.warnings, text, tokens, *money)
    failure = result.failure
    terminal = attempts.ended_by(failure)
    return Verdict("failed", None, failure, terminal, failure.errors, text, tokens, *money)


def judge_unreadable(
    raw: str | None,
    usage: TokenUsage | None,
    message: str,
    kind: str,
    price: Price,
    attempts: Attempts,
) -> Verdict:
    """An answer the provider billed but whose envelope could not be read (``kind`` names
    the error): a parse failure, retryable, with the raw body kept and its usage priced."""
    errors = ({"type": kind, "message": message},)
    failure = StepFailure("parse", message, errors, retryable=True)
    terminal = attempts.ended_by(failure)
    if usage is None:
        return Verdict("failed", None, failure, terminal, errors, raw)
    paid = price(usage)
    return Verdict(
        "failed", None, failure, terminal, errors, raw, _tokens(usage),
        paid.cost_usd, paid.tier, paid.standard_usd,
    )  # fmt: skip


def judge_error(
    kind: str, status: int | None, message: str, retryable: bool, attempts: Attempts
) -> Verdict:
    """A request the provider did not answer (``kind``: the error's class name, as realtime
    raises it; ``status``: its HTTP status): a failure at ``provider``, costing nothing."""
    errors = ({"type": kind, "status": status, "message": message},)
    failure = StepFailure("provider", message, errors, retryable=retryable)
    return Verdict("error", None, failure, attempts.ended_by(failure), errors)


def judge_missing(message: str, attempts: Attempts) -> Verdict:
    """A request a batch's results have no line for (dropped, or the batch failed as a
    whole, ``message`` says which): a retryable failure at ``provider``, costing nothing."""
    errors = ({"type": "missing_result", "message": message},)
    failure = StepFailure("provider", message, errors, retryable=True)
    return Verdict("error", None, failure, attempts.ended_by(failure), errors)


def _tokens(usage: TokenUsage) -> TokenCounts:
    return TokenCounts(usage.input_tokens, usage.output_tokens, cached_tokens_of(usage))


__all__ = [
    "NO_TOKENS",
    "Attempts",
    "Price",
    "PriceList",
    "Verdict",
    "judge_answer",
    "judge_error",
    "judge_missing",
    "judge_unreadable",
    "no_charge",
]
