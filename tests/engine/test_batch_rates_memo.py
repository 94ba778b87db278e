"""Batch collection looks each batch's rates up once (``batch_collect.MemoRates``)."""

from __future__ import annotations

from datetime import UTC, datetime

from octopipe.core.costs import Tier, TieredRates
from octopipe.core.registry import load_registry
from octopipe.engine.batch_collect import MemoRates

AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class CountingCatalog:
    """A catalog that answers from a registry and counts the lookups."""

    def __init__(self) -> None:
        self.registry = load_registry()
        self.calls = 0

    def rates(
        self, provider: str, model: str, tier: Tier, at: datetime | None = None
    ) -> TieredRates | None:
        self.calls += 1
        return self.registry.rates(provider, model, tier, at)


def test_the_same_lookup_is_made_once_and_answers_as_the_catalog() -> None:
    catalog = CountingCatalog()
    memo = MemoRates(catalog)
    first = memo.rates("openai", "gpt-4o-mini", "batch", AT)
    again = memo.rates("openai", "gpt-4o-mini", "batch", AT)
    assert first is not None
    assert again == first == catalog.registry.rates("openai", "gpt-4o-mini", "batch", AT)
    assert catalog.calls == 1


def test_another_tier_or_time_is_looked_up_on_its_own() -> None:
    catalog = CountingCatalog()
    memo = MemoRates(catalog)
    memo.rates("openai", "gpt-4o-mini", "batch", AT)
    memo.rates("openai", "gpt-4o-mini", "standard", AT)
    memo.rates("openai", "gpt-4o-mini", "batch", AT.replace(year=2025))
    assert catalog.calls == 3
    assert memo.rates("openai", "gpt-4o-mini", "standard", AT) == catalog.registry.rates(
        "openai", "gpt-4o-mini", "standard", AT
    )
    assert catalog.calls == 3


def test_an_unknown_price_is_remembered_as_unknown() -> None:
    catalog = CountingCatalog()
    memo = MemoRates(catalog)
    assert memo.rates("openai", "no-such-model", "batch", AT) is None
    assert memo.rates("openai", "no-such-model", "batch", AT) is None
    assert catalog.calls == 1


def test_now_is_never_reused() -> None:
    catalog = CountingCatalog()
    memo = MemoRates(catalog)
    memo.rates("openai", "gpt-4o-mini", "batch", None)
    memo.rates("openai", "gpt-4o-mini", "batch", None)
    assert catalog.calls == 2


def test_the_memo_stays_bounded() -> None:
    catalog = CountingCatalog()
    memo = MemoRates(catalog)
    for minute in range(MemoRates.MEMO_SIZE + 10):
        memo.rates(
            "openai", "gpt-4o-mini", "batch", AT.replace(minute=minute % 60, hour=minute // 60)
        )
    assert len(memo._memo) <= MemoRates.MEMO_SIZE
    assert catalog.calls == MemoRates.MEMO_SIZE + 10
