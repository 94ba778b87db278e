"""Golden prices: octopipe's cost of a call equals the price database's own ``calc_price`` for
the same (provider, model, usage with cache reads and writes, tier, timestamp), and for a few
rows the vendor's published list price."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from genai_prices import Usage as DbUsage
from genai_prices import calc_price

from octopipe.core import price_db
from octopipe.core.costs import TokenCounts, cost_usd
from octopipe.core.registry import load_registry

M = 1_000_000
NOV = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
JUN = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)

CONTEXT = {"standard": None, "batch": {"processing": "batch"}, "flex": {"service_tier": "flex"}}
DB_PROVIDER = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}

# (provider, model, input (all prompt tokens), cache reads, cache writes, output, tier, when)
GOLDEN = [
    ("openai", "gpt-4o-mini", 12_000, 4_000, 0, 800, "standard", NOV),
    ("openai", "gpt-4o-mini", 12_000, 4_000, 0, 800, "batch", NOV),
    ("openai", "gpt-5-mini", 50_000, 20_000, 0, 3_000, "flex", NOV),
    ("openai", "gpt-5-mini", 50_000, 20_000, 0, 3_000, "standard", JUN),
    ("openai", "gpt-6-luna", 300_000, 100_000, 0, 5_000, "flex", NOV),  # long context
    ("openai", "gpt-6-luna", 1_000, 0, 0, 100, "batch", NOV),
    ("openai", "o3", 9_000, 1_000, 0, 9_000, "flex", NOV),
    ("anthropic", "claude-sonnet-4-5", 150_000, 40_000, 30_000, 2_000, "standard", NOV),
    ("anthropic", "claude-sonnet-4-5", 250_000, 40_000, 30_000, 2_000, "standard", NOV),
    ("anthropic", "claude-sonnet-5-5", 10_000, 2_000, 3_000, 500, "batch", NOV),
    ("anthropic", "claude-haiku-5-5", 120_000, 0, 10_000, 900, "standard", NOV),
    ("gemini", "gemini-2.5-pro", 180_000, 50_000, 0, 4_000, "standard", NOV),
    ("gemini", "gemini-2.5-pro", 220_000, 50_000, 0, 4_000, "batch", NOV),
    ("gemini", "gemini-3.8-flash", 5_000, 1_000, 0, 700, "batch", NOV),
]


@pytest.mark.parametrize(
    ("provider", "model", "inp", "reads", "writes", "out", "tier", "when"), GOLDEN
)
def test_octopipe_price_equals_the_databases_calc_price(
    provider: str,
    model: str,
    inp: int,
    reads: int,
    writes: int,
    out: int,
    tier: str,
    when: datetime,
) -> None:
    ours = cost_usd(
        load_registry(),
        provider,
        model,
        TokenCounts(inp, out, reads, writes),
        "batch" if tier == "batch" else "realtime",
        tier=tier,  # type: ignore[arg-type]
        at=when,
    )
    usage = DbUsage(
        input_tokens=inp, cache_read_tokens=reads, cache_write_tokens=writes, output_tokens=out
    )
    theirs = calc_price(
        usage,
        model,
        provider_id=DB_PROVIDER[provider],
        genai_request_timestamp=when,
        price_context=CONTEXT[tier],
    ).total_price
    assert ours is not None
    assert ours == pytest.approx(float(theirs), rel=1e-12, abs=1e-15)


def test_the_database_is_asked_at_the_time_of_the_call() -> None:
    """Before the database lists a batch price (2026-10-14 for these models) octopipe does not
    take its standard price for batch: the vendor's 50% from the registry applies."""
    june = cost_usd(load_registry(), "openai", "gpt-4o-mini", TokenCounts(M, M), "batch", at=JUN)
    standard = cost_usd(load_registry(), "openai", "gpt-4o-mini", TokenCounts(M, M), at=JUN)
    assert june == pytest.approx(0.375) and standard == pytest.approx(0.75)


def test_flex_is_unknown_where_the_vendor_offers_none() -> None:
    """gpt-4o-mini has no flex tier: its flex price is unknown, not the standard one."""
    registry = load_registry()
    assert registry.rates("openai", "gpt-4o-mini", "flex", NOV) is None
    assert cost_usd(registry, "openai", "gpt-4o-mini", TokenCounts(1, 1), tier="flex") is None


# Vendors' published list prices, USD per million tokens.
# - OpenAI pricing page https://openai.com/api/pricing/ (GPT-4o mini, as published 2024-07-18
#   and unchanged on the page since): input $0.15, cached input $0.075, output $0.60.
# - Anthropic pricing page https://www.anthropic.com/pricing#api (Claude Sonnet 4.5, as
#   published 2025-09-29): input $3, 5-minute cache write $3.75, cache read $0.30, output $15;
#   prompts over 200K tokens (1M context): input $6, output $22.50.
# - Google https://ai.google.dev/gemini-api/docs/pricing (Gemini 2.5 Pro, as published
#   2025-06-17): input $1.25 / output $10 up to 200K prompt tokens, $2.50 / $15 above.
VENDOR = [
    ("openai", "gpt-4o-mini", TokenCounts(M, M, M // 2), 0.5 * 0.15 + 0.5 * 0.075 + 0.60),
    (
        "anthropic",
        "claude-sonnet-4-5",
        TokenCounts(100_000, 10_000, 20_000, 30_000),
        (50_000 * 3 + 20_000 * 0.30 + 30_000 * 3.75 + 10_000 * 15) / M,
    ),
    ("anthropic", "claude-sonnet-4-5", TokenCounts(300_000, 0), 300_000 * 6 / M),
    ("gemini", "gemini-2.5-pro", TokenCounts(100_000, 10_000), (100_000 * 1.25 + 10_000 * 10) / M),
    ("gemini", "gemini-2.5-pro", TokenCounts(300_000, 10_000), (300_000 * 2.5 + 10_000 * 15) / M),
]


@pytest.mark.parametrize(("provider", "model", "usage", "published"), VENDOR)
def test_octopipe_price_equals_the_vendors_published_price(
    provider: str, model: str, usage: TokenCounts, published: float
) -> None:
    assert cost_usd(load_registry(), provider, model, usage, at=NOV) == pytest.approx(published)


def test_the_database_version_is_named() -> None:
    assert price_db.database_version().startswith("genai-prices 0.2.3 (")
