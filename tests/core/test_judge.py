"""The one judge (``core.judge``): an answer, or its absence, to a verdict -- as tables.

The step is ``random_walk``'s ``report``: the answer must give the walk's end square, its
number of moves and ``home``/``lost``, agreeing with the walk (``square``, ``moves``); more
than 200 moves is a warning.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from octopipe.core.config import load_pipeline
from octopipe.core.costs import AttemptCost, Rates, TieredRates, TokenCounts, attempt_cost
from octopipe.core.judge import (
    Attempts,
    PriceList,
    Verdict,
    judge_answer,
    judge_error,
    judge_missing,
    judge_unreadable,
    no_charge,
)
from octopipe.core.registry import load_registry
from octopipe.core.steps import CompiledPipeline, CompiledStep
from support.paths import EXAMPLES

WALK = {"square": 10, "moves": 12, "start_square": 5}
RIGHT = {"end_square": 10, "move_count": 12, "ending": "home"}
USAGE = TokenCounts(1_000, 100, 400)
FIRST, LAST = Attempts(0, 3), Attempts(2, 3)


@pytest.fixture(scope="module")
def report() -> CompiledStep:
    return CompiledPipeline(load_pipeline(EXAMPLES / "random_walk"))[1]


def half_a_cent(usage: Any) -> AttemptCost:
    return AttemptCost("standard", 0.005, 0.005)


def answer(**changes: Any) -> str:
    return json.dumps({**RIGHT, **changes})


@pytest.mark.parametrize(
    ("text", "outcome", "stage", "delta"),
    [
        (answer(), "valid", None, RIGHT),
        (f"Here it is:\n```json\n{answer()}\n```", "valid", None, RIGHT),  # repaired
        (answer(move_count="12"), "valid", None, RIGHT),  # coerced
        ("the walk ended at home", "failed", "parse", None),
        (json.dumps({"end_square": 10, "ending": "home"}), "failed", "schema", None),
        (answer(ending="lost"), "failed", "rules", None),
        (answer(move_count=13), "failed", "rules", None),
    ],
)
def test_an_answer_is_parsed_checked_and_priced(
    report: CompiledStep, text: str, outcome: str, stage: str | None, delta: Any
) -> None:
    verdict = judge_answer(report, WALK, text, USAGE, half_a_cent, FIRST)
    assert (verdict.outcome, verdict.stage, verdict.delta) == (outcome, stage, delta)
    assert verdict.ok is (outcome == "valid")
    assert verdict.response == text  # the raw answer, exactly as received
    assert verdict.tokens == USAGE and verdict.cost_usd == 0.005  # paid, valid or not
    assert verdict.terminal is False  # attempt 1 of 3: a failed answer is asked again
    assert verdict.keeps_prompt is (outcome != "valid")
    if verdict.failure is not None:
        assert verdict.failure.retryable
        assert verdict.errors == verdict.failure.errors and verdict.errors


@pytest.mark.parametrize(
    ("text", "attempts", "terminal"),
    [
        (answer(ending="lost"), Attempts(0, 3), False),
        (answer(ending="lost"), Attempts(1, 3), False),
        (answer(ending="lost"), Attempts(2, 3), True),  # the budget's last attempt
        (answer(ending="lost"), Attempts(0, 1), True),
        (answer(ending="lost"), Attempts(5, 3), True),  # past the budget (max lowered since)
        (answer(), Attempts(2, 3), False),  # a valid answer never ends anything
    ],
)
def test_a_failure_is_terminal_on_the_last_attempt_of_the_budget(
    report: CompiledStep, text: str, attempts: Attempts, terminal: bool
) -> None:
    verdict = judge_answer(report, WALK, text, USAGE, half_a_cent, attempts)
    assert verdict.terminal is terminal
    assert attempts.number == attempts.used + 1


def test_a_valid_answer_keeps_its_warnings_as_the_attempt_errors(report: CompiledStep) -> None:
    long_walk = {**WALK, "moves": 250}
    verdict = judge_answer(report, long_walk, answer(move_count=250), USAGE, no_charge, FIRST)
    assert verdict.ok and verdict.delta == {**RIGHT, "move_count": 250}
    assert [w["rule"] for w in verdict.errors] == ["long_walk"]
    assert "unusually long walk: 250 moves" in verdict.errors[0]["message"]


def test_the_failure_message_names_what_is_wrong(report: CompiledStep) -> None:
    verdict = judge_answer(report, WALK, answer(move_count=13), USAGE, no_charge, FIRST)
    assert verdict.failure is not None
    assert verdict.failure.message == "reported 13 moves but the walk took 12"


def test_checking_that_raises_fails_the_unit_at_parse_for_good(
    report: CompiledStep, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(report, "check_answer", broken)
    verdict = judge_answer(report, WALK, answer(), USAGE, half_a_cent, FIRST)
    assert (verdict.outcome, verdict.stage, verdict.terminal) == ("failed", "parse", True)
    assert verdict.failure is not None and not verdict.failure.retryable
    assert verdict.failure.message == "checking the answer failed: KeyError('bug')"
    assert verdict.errors == ({"type": "KeyError", "message": verdict.failure.message},)
    assert verdict.response == answer() and verdict.cost_usd == 0.005  # the answer is kept


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        # gpt-4o-mini in the price database: $0.15 / $0.60 per million, cached input $0.075;
        # batch half of input and output, cached input not discounted further
        ("standard", (600 * 0.15 + 400 * 0.075 + 100 * 0.60) / 1e6),
        ("batch", (600 * 0.075 + 400 * 0.075 + 100 * 0.30) / 1e6),
    ],
)
def test_the_price_list_prices_at_the_tiers_rates(
    report: CompiledStep, tier: Any, expected: float
) -> None:
    price = PriceList(load_registry(), "openai", "gpt-4o-mini", tier)
    verdict = judge_answer(report, WALK, answer(), USAGE, price, FIRST)
    assert verdict.cost_usd == pytest.approx(expected, rel=1e-12)
    assert verdict.tier == tier
    standard = (600 * 0.15 + 400 * 0.075 + 100 * 0.60) / 1e6
    assert verdict.standard_cost_usd == pytest.approx(standard, rel=1e-12)


def test_an_unknown_price_is_unknown_not_zero(report: CompiledStep) -> None:
    price = PriceList(load_registry(), "openai", "no-such-model", "standard")
    verdict = judge_answer(report, WALK, answer(), USAGE, price, FIRST)
    assert verdict.ok and verdict.cost_usd is None


@pytest.mark.parametrize(
    "text", [answer(), answer(ending="lost"), "not json", answer(move_count="12")]
)
def test_a_stored_answer_served_again_gets_the_same_verdict_at_no_cost(
    report: CompiledStep, text: str
) -> None:
    """A response-cache hit goes through the same judge: same verdict, nothing charged."""
    paid = judge_answer(report, WALK, text, USAGE, half_a_cent, FIRST)
    again = judge_answer(report, WALK, text, USAGE, no_charge, FIRST)
    assert again == dataclasses.replace(paid, cost_usd=0.0, standard_cost_usd=0.0)


@pytest.mark.parametrize(
    ("kind", "status", "retryable", "attempts", "terminal"),
    [
        ("TransientProviderError", 500, True, FIRST, False),
        ("TransientProviderError", 500, True, LAST, True),
        ("RateLimited", 429, True, FIRST, False),
        ("BadRequest", 400, False, FIRST, True),  # the same request is refused again
        ("ContentFiltered", None, False, FIRST, True),
    ],
)
def test_a_provider_error_is_a_failure_at_provider_that_costs_nothing(
    kind: str, status: int | None, retryable: bool, attempts: Attempts, terminal: bool
) -> None:
    verdict = judge_error(kind, status, "the request failed", retryable, attempts)
    expected = {"type": kind, "status": status, "message": "the request failed"}
    assert verdict == Verdict(
        "error",
        failure=verdict.failure,
        terminal=terminal,
        errors=(expected,),
        cost_usd=0.0,
    )
    assert verdict.failure is not None
    assert (verdict.stage, verdict.failure.retryable) == ("provider", retryable)
    assert verdict.response is None and verdict.tokens == TokenCounts(0, 0, 0)
    assert verdict.keeps_prompt


@pytest.mark.parametrize(
    ("usage", "cost", "tokens"),
    [
        (USAGE, 0.005, USAGE),
        (None, 0.0, TokenCounts(0, 0, 0)),  # no usage reported: nothing to price
    ],
)
def test_an_unreadable_billed_answer_fails_at_parse_and_is_paid(
    usage: Any, cost: float, tokens: TokenCounts
) -> None:
    verdict = judge_unreadable(
        "{not json", usage, "no choices", "MalformedResponse", half_a_cent, FIRST
    )
    assert (verdict.outcome, verdict.stage, verdict.terminal) == ("failed", "parse", False)
    assert verdict.failure is not None and verdict.failure.retryable
    assert verdict.errors == ({"type": "MalformedResponse", "message": "no choices"},)
    assert (verdict.response, verdict.cost_usd, verdict.tokens) == ("{not json", cost, tokens)
    assert judge_unreadable(None, None, "x", "MalformedResponse", no_charge, LAST).terminal


@pytest.mark.parametrize(("attempts", "terminal"), [(FIRST, False), (LAST, True)])
def test_a_request_missing_from_the_results_is_retried_within_the_budget(
    attempts: Attempts, terminal: bool
) -> None:
    verdict = judge_missing("dropped", attempts)
    assert (verdict.outcome, verdict.stage, verdict.terminal) == ("error", "provider", terminal)
    assert verdict.errors == ({"type": "missing_result", "message": "dropped"},)
    assert verdict.cost_usd == 0.0


class _DatedCatalog:
    """Rates that change on 2026-06-01 (input $1 → $2 per million; cache writes $5), counting
    its lookups."""

    def __init__(self) -> None:
        self.lookups = 0

    def rates(self, provider: str, model: str, tier: Any, at: Any = None) -> TieredRates:
        self.lookups += 1
        early = at is not None and at < datetime(2026, 6, 1, tzinfo=UTC)
        return TieredRates(Rates(input=1.0 if early else 2.0, output=10.0, cache_write=5.0))


SPRING, SUMMER = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)


def test_a_dated_price_list_prices_each_usage_once_and_the_same_as_unmemoized() -> None:
    catalog = _DatedCatalog()
    price = PriceList(catalog, "openai", "m", "batch", at=SPRING)
    usages = [TokenCounts(100 + n % 7, 20 + n % 3, n % 2) for n in range(200)]
    got = [price(u) for u in usages]
    expected = [attempt_cost(_DatedCatalog(), "openai", "m", u, "batch", SPRING) for u in usages]
    assert got == expected
    assert got[0].cost_usd == pytest.approx((100 * 1.0 + 20 * 10.0) / 1e6, rel=1e-12)
    distinct = len({(u.input_tokens, u.output_tokens, u.cached_tokens) for u in usages})
    assert catalog.lookups == 2 * distinct  # the tier's rates and the standard ones, once each


def test_a_price_list_for_another_time_does_not_reuse_the_first_ones_prices() -> None:
    catalog = _DatedCatalog()
    spring = PriceList(catalog, "openai", "m", "standard", at=SPRING)
    usage = TokenCounts(1_000_000, 0)
    assert spring(usage).cost_usd == pytest.approx(1.0)
    summer = spring.requested_at(SUMMER)
    assert summer(usage).cost_usd == pytest.approx(2.0)
    assert spring(usage).cost_usd == pytest.approx(1.0)
    assert spring.in_tier("batch")(usage) == attempt_cost(
        catalog, "openai", "m", usage, "batch", SPRING
    )


def test_a_cache_write_is_part_of_what_a_memoized_price_tells_apart() -> None:
    price = PriceList(_DatedCatalog(), "anthropic", "m", "standard", at=SUMMER)
    plain = price(TokenCounts(1_000_000, 0, 0, 0))
    written = price(TokenCounts(1_000_000, 0, 0, 500_000))
    assert plain.cost_usd == pytest.approx(2.0)
    assert written.cost_usd == pytest.approx(0.5 * 2.0 + 0.5 * 5.0)


def test_an_undated_price_list_is_priced_at_each_call() -> None:
    catalog = _DatedCatalog()
    price = PriceList(catalog, "openai", "m", "standard")
    price(USAGE)
    price(USAGE)
    assert catalog.lookups == 2
