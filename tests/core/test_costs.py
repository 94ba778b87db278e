"""Cost arithmetic: one formula, unknown models stay unknown, cached tokens per vendor rule."""

from __future__ import annotations

from pathlib import Path

import pytest

import octopipe
from octopipe.core.amounts import format_usd
from octopipe.core.costs import (
    Estimate,
    StepLoad,
    TokenCounts,
    cost_usd,
    effective_rates,
    estimate_run,
    estimate_tokens,
    price_summary,
)
from octopipe.core.registry import Registry, load_registry, parse_registry
from octopipe.providers.base import Usage

PRICES = """
version: 1
default_provider: openai
providers:
  openai:
    default_model: cheap
    batch_discount: 0.5
    models:
      cheap:
        per_million_usd: {realtime: {input: 0.15, cached_input: 0.075, output: 0.60}}
        checked: 2026-01-01
        source: test
      explicit:
        per_million_usd:
          realtime: {input: 2.0, output: 8.0}
          batch: {input: 0.8, output: 3.0}
        checked: 2026-01-01
        source: test
  anthropic:
    default_model: claude
    batch_discount: 0.5
    models:
      claude:
        per_million_usd:
          realtime: {input: 3.0, cached_input: 0.30, output: 15.0}
          long_context:
            above_input_tokens: 200000
            realtime: {input: 6.0, cached_input: 0.60, output: 22.5}
        checked: 2026-01-01
        source: test
  openai-compatible:
    default_model: local
    models:
      local:
        per_million_usd: {realtime: {input: 0.0, output: 0.0}}
        checked: 2026-01-01
        source: test
"""
M = 1_000_000


@pytest.fixture(scope="module")
def reg() -> Registry:
    return parse_registry(PRICES)


def test_realtime_cost(reg: Registry) -> None:
    assert cost_usd(reg, "openai", "cheap", TokenCounts(M, M)) == pytest.approx(0.75)
    assert cost_usd(reg, "openai", "cheap", TokenCounts(1000, 500), "realtime") == (
        pytest.approx((1000 * 0.15 + 500 * 0.60) / M)
    )


def test_batch_is_realtime_times_discount_when_not_explicit(reg: Registry) -> None:
    usage = TokenCounts(123_456, 7_890, 1_000)
    realtime = cost_usd(reg, "openai", "cheap", usage, "realtime")
    batch = cost_usd(reg, "openai", "cheap", usage, "batch")
    assert realtime is not None and batch == pytest.approx(realtime * 0.5)


def test_explicit_batch_prices_are_used_as_given(reg: Registry) -> None:
    assert cost_usd(reg, "openai", "explicit", TokenCounts(M, M), "batch") == pytest.approx(3.8)
    assert cost_usd(reg, "openai", "explicit", TokenCounts(M, M), "realtime") == (
        pytest.approx(10.0)
    )


def test_no_batch_price_without_a_discount(reg: Registry) -> None:
    assert cost_usd(reg, "openai-compatible", "local", TokenCounts(M, M), "realtime") == 0.0
    assert cost_usd(reg, "openai-compatible", "local", TokenCounts(M, M), "batch") is None


def test_unknown_model_is_unknown_not_guessed(reg: Registry) -> None:
    assert cost_usd(reg, "openai", "gpt-99", TokenCounts(M, M)) is None
    assert cost_usd(reg, "nope", "cheap", TokenCounts(M, M)) is None
    assert cost_usd(None, "openai", "cheap", TokenCounts(M, M)) is None
    assert format_usd(None) == "unknown"


def test_a_model_entry_can_be_priced_directly(reg: Registry) -> None:
    info = reg.model("openai", "cheap")
    assert info is not None
    assert cost_usd(info, "openai", "cheap", TokenCounts(M, 0), "batch") == pytest.approx(0.075)


# --- cached tokens ----------------------------------------------------------------------------


def test_cached_tokens_billed_at_the_cached_price(reg: Registry) -> None:
    # 1,000 prompt tokens of which 400 from cache (OpenAI / Gemini count them inside the prompt)
    cost = cost_usd(reg, "openai", "cheap", TokenCounts(1000, 0, 400))
    assert cost == pytest.approx((600 * 0.15 + 400 * 0.075) / M)


def test_anthropic_raw_numbers_priced_like_the_normalised_ones(reg: Registry) -> None:
    # Anthropic reports input_tokens=600 (fresh) and cache_read_input_tokens=400.
    raw = cost_usd(
        reg,
        "anthropic",
        "claude",
        TokenCounts(600, 100, 400),
        cached_included=False,  # Anthropic's own input count excludes cache reads
    )
    normalised = cost_usd(reg, "anthropic", "claude", TokenCounts(1000, 100, 400))
    assert raw == pytest.approx(normalised)
    assert raw == pytest.approx((600 * 3.0 + 400 * 0.30 + 100 * 15.0) / M)


def test_adapter_usage_objects_are_accepted(reg: Registry) -> None:
    usage = Usage(input_tokens=1000, output_tokens=10, cached_input_tokens=1000)
    assert cost_usd(reg, "openai", "cheap", usage) == pytest.approx((1000 * 0.075 + 10 * 0.60) / M)


def test_cached_without_a_cached_price_costs_the_input_price(reg: Registry) -> None:
    with_cache = cost_usd(reg, "openai", "explicit", TokenCounts(1000, 0, 900))
    assert with_cache == pytest.approx(1000 * 2.0 / M)


def test_cached_count_above_the_prompt_is_capped(reg: Registry) -> None:
    assert cost_usd(reg, "openai", "cheap", TokenCounts(100, 0, 500)) == pytest.approx(
        100 * 0.075 / M
    )


def test_negative_tokens_are_refused(reg: Registry) -> None:
    with pytest.raises(ValueError, match="negative"):
        cost_usd(reg, "openai", "cheap", TokenCounts(-1, 0))


# --- long-context tier ------------------------------------------------------------------------


def test_long_context_tier_applies_above_the_threshold(reg: Registry) -> None:
    at = cost_usd(reg, "anthropic", "claude", TokenCounts(200_000, 1000))
    above = cost_usd(reg, "anthropic", "claude", TokenCounts(200_001, 1000))
    assert at == pytest.approx((200_000 * 3.0 + 1000 * 15.0) / M)
    assert above == pytest.approx((200_001 * 6.0 + 1000 * 22.5) / M)
    batch = cost_usd(reg, "anthropic", "claude", TokenCounts(200_001, 1000), "batch")
    assert batch == pytest.approx(above * 0.5)


def test_cache_reads_count_toward_the_long_context_threshold(reg: Registry) -> None:
    # Anthropic-style raw numbers: 150K fresh + 100K cache reads = a 250K-token prompt.
    cost = cost_usd(
        reg, "anthropic", "claude", TokenCounts(150_000, 0, 100_000), cached_included=False
    )
    assert cost == pytest.approx((150_000 * 6.0 + 100_000 * 0.60) / M)


def test_effective_rates_rejects_unknown_modes(reg: Registry) -> None:
    info = reg.model("openai", "cheap")
    assert info is not None
    with pytest.raises(ValueError, match="mode"):
        effective_rates(info, "flex")  # type: ignore[arg-type]


def test_price_summary_shows_derived_batch(reg: Registry) -> None:
    info = reg.model("openai", "cheap")
    assert info is not None
    summary = price_summary(info)["per_million_usd"]
    assert summary["batch"] == {"input": 0.075, "cached_input": 0.0375, "output": 0.3}
    assert summary["batch_derived"] is True


# --- estimate ---------------------------------------------------------------------------------


def test_estimate_sums_per_step(reg: Registry) -> None:
    estimate = estimate_run(
        reg,
        [
            StepLoad("classify", "openai", "cheap", 10_000, 500, 50),
            ("judge", "anthropic", "claude", 2_000, 1_000, 200),
        ],
        "realtime",
    )
    classify = 10_000 * (500 * 0.15 + 50 * 0.60) / M
    judge = 2_000 * (1_000 * 3.0 + 200 * 15.0) / M
    assert [line.cost_usd for line in estimate.per_step] == [
        pytest.approx(classify),
        pytest.approx(judge),
    ]
    assert estimate.total_usd == pytest.approx(classify + judge)
    assert estimate.unknown_steps == ()
    assert (estimate.input_tokens, estimate.output_tokens) == (7_000_000, 900_000)


def test_estimate_in_batch_mode_is_discounted(reg: Registry) -> None:
    steps = [("classify", "openai", "cheap", 1000, 500, 50)]
    realtime, batch = estimate_run(reg, steps, "realtime"), estimate_run(reg, steps, "batch")
    assert realtime.total_usd is not None
    assert batch.total_usd == pytest.approx(realtime.total_usd * 0.5)
    assert batch.mode == "batch"


def test_estimate_is_unknown_when_any_step_is_unknown_but_keeps_known_lines(reg: Registry) -> None:
    estimate: Estimate = estimate_run(
        reg,
        [
            ("classify", "openai", "cheap", 1000, 500, 50),
            ("judge", "openai", "gpt-99", 1000, 500, 50),
        ],
        "realtime",
    )
    assert estimate.total_usd is None
    assert estimate.unknown_steps == ("judge",)
    known = 1000 * (500 * 0.15 + 50 * 0.60) / M
    assert estimate.per_step[0].cost_usd == pytest.approx(known)
    assert estimate.per_step[1].cost_usd is None
    assert estimate.known_usd == pytest.approx(known)
    assert format_usd(estimate.total_usd) == "unknown"


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
