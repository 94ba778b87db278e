"""Cost arithmetic: one formula, unknown models stay unknown, cached tokens per vendor rule,
tiers and price files. (Prices of the database itself: tests/core/test_price_db.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import octopipe
from octopipe.core.amounts import format_usd
from octopipe.core.costs import (
    Estimate,
    StepLoad,
    TokenCounts,
    attempt_cost,
    cost_usd,
    estimate_run,
    estimate_tokens,
)
from octopipe.core.price_file import parse_price_file
from octopipe.core.registry import Registry, load_registry
from octopipe.errors import ConfigError
from octopipe.providers.base import Usage

PRICE_FILE_PROVIDERS = load_registry().price_file_providers()

PRICES = """
openai:
  cheap:
    standard: {input: 0.15, cached_input: 0.075, output: 0.60}
    batch: {input: 0.075, cached_input: 0.0375, output: 0.30}
    flex: {input: 0.075, output: 0.30}
  explicit:
    standard: {input: 2.0, output: 8.0}
    batch: {input: 0.8, output: 3.0}
anthropic:
  claude:
    standard: {input: 3.0, cached_input: 0.30, cache_write: 3.75, output: 15.0}
    long_context: {above_input_tokens: 200000, standard: {input: 6.0, cached_input: 0.60, output: 22.5}}
openai-compatible:
  local:
    standard: {input: 0.0, output: 0.0}
"""
M = 1_000_000


@pytest.fixture(scope="module")
def reg() -> Registry:
    return load_registry().with_prices(
        parse_price_file(PRICES, "prices.yaml", PRICE_FILE_PROVIDERS)
    )


def test_standard_cost(reg: Registry) -> None:
    assert cost_usd(reg, "openai", "cheap", TokenCounts(M, M)) == pytest.approx(0.75)


def test_batch_uses_the_batch_tier(reg: Registry) -> None:
    assert cost_usd(reg, "openai", "cheap", TokenCounts(M, M), "batch") == pytest.approx(0.375)
    assert cost_usd(reg, "openai", "explicit", TokenCounts(M, M), "batch") == pytest.approx(3.8)


def test_flex_tier_and_the_standard_equivalent(reg: Registry) -> None:
    cost = attempt_cost(reg, "openai", "cheap", TokenCounts(M, M), "flex", None)
    assert cost.tier == "flex"
    assert cost.cost_usd == pytest.approx(0.375)
    assert cost.standard_usd == pytest.approx(0.75)


def test_a_tier_a_price_file_does_not_give_is_unknown(reg: Registry) -> None:
    assert cost_usd(reg, "openai", "explicit", TokenCounts(M, M), tier="flex") is None
    assert cost_usd(reg, "openai", "cheap", TokenCounts(M, M), tier="priority") is None


def test_a_price_file_adds_a_model_to_the_compatible_provider(reg: Registry) -> None:
    assert cost_usd(reg, "openai-compatible", "local", TokenCounts(M, M)) == 0.0
    assert cost_usd(load_registry(), "openai-compatible", "local", TokenCounts(M, M)) is None


def test_a_price_file_overrides_the_database() -> None:
    own = parse_price_file(
        "openai:\n  gpt-4o-mini:\n    standard: {input: 1, output: 1}\n", "p", PRICE_FILE_PROVIDERS
    )
    usage = TokenCounts(M, M)
    assert cost_usd(load_registry().with_prices(own), "openai", "gpt-4o-mini", usage) == 2.0
    assert cost_usd(load_registry(), "openai", "gpt-4o-mini", usage) == pytest.approx(0.75)


def test_unknown_model_is_unknown_not_guessed(reg: Registry) -> None:
    assert cost_usd(reg, "openai", "gpt-99", TokenCounts(10, 10)) is None
    assert cost_usd(reg, "nope", "cheap", TokenCounts(10, 10)) is None
    assert cost_usd(None, "openai", "cheap", TokenCounts(10, 10)) is None


def test_cached_tokens_billed_at_the_cached_price(reg: Registry) -> None:
    # 1M prompt tokens of which 400k cached: 600k x 0.15 + 400k x 0.075
    cost = cost_usd(reg, "openai", "cheap", TokenCounts(M, 0, 400_000))
    assert cost == pytest.approx(0.09 + 0.03)


def test_cache_writes_billed_at_the_write_price(reg: Registry) -> None:
    usage = TokenCounts(100_000, 0, cached_tokens=20_000, cache_write_tokens=30_000)
    cost = cost_usd(reg, "anthropic", "claude", usage)
    assert cost == pytest.approx((50_000 * 3.0 + 20_000 * 0.30 + 30_000 * 3.75) / M)


def test_anthropic_raw_numbers_priced_like_the_normalised_ones(reg: Registry) -> None:
    raw = TokenCounts(input_tokens=1000, output_tokens=50, cached_tokens=9000)
    normalised = TokenCounts(input_tokens=10_000, output_tokens=50, cached_tokens=9000)
    vendor_rule = False  # Anthropic's own input count excludes cache reads (providers/catalog.py)
    assert cost_usd(reg, "anthropic", "claude", raw, cached_included=vendor_rule) == pytest.approx(
        cost_usd(reg, "anthropic", "claude", normalised)
    )


def test_adapter_usage_objects_are_accepted(reg: Registry) -> None:
    usage = Usage(input_tokens=M, output_tokens=0, cached_input_tokens=M)
    assert cost_usd(reg, "openai", "cheap", usage) == pytest.approx(0.075)


def test_cached_without_a_cached_price_costs_the_input_price(reg: Registry) -> None:
    assert cost_usd(reg, "openai", "explicit", TokenCounts(M, 0, M)) == pytest.approx(2.0)


def test_cached_count_above_the_prompt_is_capped(reg: Registry) -> None:
    assert cost_usd(reg, "openai", "cheap", TokenCounts(100, 0, 500)) == pytest.approx(
        100 * 0.075 / M
    )


def test_negative_tokens_are_refused(reg: Registry) -> None:
    with pytest.raises(ValueError, match="negative"):
        cost_usd(reg, "openai", "cheap", TokenCounts(-1, 0))


def test_long_context_tier_applies_above_the_threshold(reg: Registry) -> None:
    below = cost_usd(reg, "anthropic", "claude", TokenCounts(200_000, 0))
    above = cost_usd(reg, "anthropic", "claude", TokenCounts(200_001, 0))
    assert below == pytest.approx(0.6)
    assert above == pytest.approx(200_001 * 6.0 / M)


def test_cache_reads_count_toward_the_long_context_threshold(reg: Registry) -> None:
    usage = TokenCounts(1000, 0, 0)
    raw = TokenCounts(input_tokens=1000, output_tokens=0, cached_tokens=200_000)
    assert cost_usd(reg, "anthropic", "claude", raw, cached_included=False) == pytest.approx(
        (1000 * 6.0 + 200_000 * 0.60) / M
    )
    assert cost_usd(reg, "anthropic", "claude", usage) == pytest.approx(0.003)


def test_unknown_modes_are_refused(reg: Registry) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        cost_usd(reg, "openai", "cheap", TokenCounts(1, 1), "flex")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("openia:\n  m:\n    standard: {input: 1, output: 1}\n", "p.yaml:1 [openia]"),
        (
            "openai:\n  m:\n    standard: {input: -1, output: 1}\n",
            "p.yaml:3 [openai.m.standard.input]",
        ),
        ("openai:\n  m:\n    batch: {input: 1, output: 1}\n", "[openai.m.standard]"),
        (
            "openai:\n  m:\n    standard: {input: 1, output: 1, colour: 2}\n",
            "[openai.m.standard.colour]",
        ),
        ("openai: [1, 2\n", "p.yaml:"),
    ],
)
def test_price_file_errors_name_the_file_line_and_key(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_price_file(text, "p.yaml", PRICE_FILE_PROVIDERS)
    assert where in str(caught.value)


def test_estimate_sums_per_step(reg: Registry) -> None:
    estimate = estimate_run(
        reg,
        [StepLoad("a", "openai", "cheap", 10, 1000, 100), ("b", "openai", "explicit", 2, 500, 50)],
        "realtime",
    )
    assert estimate.input_tokens == 11_000 and estimate.output_tokens == 1_100
    assert estimate.total_usd == pytest.approx(
        10 * (1000 * 0.15 + 100 * 0.6) / M + 2 * (500 * 2.0 + 50 * 8.0) / M
    )


def test_estimate_in_flex_uses_flex_prices(reg: Registry) -> None:
    steps = [StepLoad("a", "openai", "cheap", 10, 1000, 100)]
    standard = estimate_run(reg, steps, "realtime")
    flex = estimate_run(reg, steps, "realtime", tier="flex")
    assert flex.total_usd == pytest.approx((standard.total_usd or 0) / 2)


def test_estimate_is_unknown_when_any_step_is_unknown_but_keeps_known_lines(reg: Registry) -> None:
    estimate: Estimate = estimate_run(
        reg,
        [
            StepLoad("a", "openai", "cheap", 10, 1000, 100),
            StepLoad("b", "openai", "gpt-99", 5, 1, 1),
        ],
        "batch",
    )
    assert estimate.total_usd is None
    assert estimate.unknown_steps == ("b",)
    assert estimate.known_usd == pytest.approx(10 * (1000 * 0.075 + 100 * 0.3) / M)


def test_prices_follow_the_date_of_the_call() -> None:
    """The database's batch price of gpt-4o-mini starts 2026-10-14; before it, batch is the
    standard price x the vendor's documented 50% (registry), never the standard price."""
    registry = load_registry()
    before = datetime(2026, 10, 1, tzinfo=UTC)
    after = datetime(2026, 11, 1, tzinfo=UTC)
    usage = TokenCounts(M, M)
    early = registry.rates("openai", "gpt-4o-mini", "batch", before)
    late = registry.rates("openai", "gpt-4o-mini", "batch", after)
    assert early is not None and "batch_discount 0.5" in early.source
    assert late is not None and late.source == "genai-prices:gpt-4o-mini"
    assert cost_usd(registry, "openai", "gpt-4o-mini", usage, "batch", at=before) == pytest.approx(
        0.375
    )


def test_estimate_of_nothing_is_zero(reg: Registry) -> None:
    assert estimate_run(reg, [], "batch").total_usd == 0.0


def test_the_octobatch_incident_is_not_repeated() -> None:
    """Octobatch priced Gemini 2.5 Pro output at a Flash fallback: $1,856 looked like ~$109.
    With the packaged registry the Pro rate is used, and an unlisted model stays unknown."""
    registry = load_registry()
    pro = cost_usd(registry, "gemini", "gemini-2.5-pro", TokenCounts(0, M), "batch")
    flash = cost_usd(registry, "gemini", "gemini-2.5-flash", TokenCounts(0, M), "batch")
    assert pro is not None and flash is not None and pro > 3 * flash
    assert cost_usd(registry, "gemini", "gemini-9-ultra", TokenCounts(0, M)) is None


def test_emulated_runs_cost_what_the_real_model_would() -> None:
    registry = load_registry()
    usage = TokenCounts(1000, 100)
    assert cost_usd(registry, "fake", "gpt-4o-mini", usage) == cost_usd(
        registry, "openai", "gpt-4o-mini", usage
    )
    assert cost_usd(registry, "fake", "claude-haiku-4-5", usage, "batch") == cost_usd(
        registry, "anthropic", "claude-haiku-4-5", usage, "batch"
    )


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)])
def test_estimate_tokens_is_about_four_characters_each(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "$0.00"),
        (0.0042, "$0.0042"),
        (0.00423456, "$0.00423"),
        (0.125, "$0.125"),
        (0.05, "$0.05"),
        (0.42, "$0.42"),
        (0.9999, "$1.00"),
        (1.5, "$1.50"),
        (1856.2, "$1,856.20"),
        (1e-9, "<$0.000001"),
        (-0.0042, "-$0.0042"),
        (None, "unknown"),
    ],
)
def test_format_usd(value: float | None, text: str) -> None:
    assert format_usd(value) == text


def test_only_costs_py_names_per_million_fields() -> None:
    """The architecture rule, stricter than tests/arch: no other module names a per-million
    field or key at all, so prices can only be read and multiplied in core/costs.py."""
    src = Path(octopipe.__file__).parent
    offenders = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if p.name != "costs.py" and "per_million" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []
