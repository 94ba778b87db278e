"""The maintained price database: genai-prices (pydantic/genai-prices), read as rates.

Why this database: it is made for exactly this job -- a small, versioned, curated price table
for OpenAI, Anthropic, Google and many more, with historic prices (a price applies from its
start date), cache-read and cache-write rates, long-context tiers and request variants
(``processing: batch``, ``service_tier: flex | priority``). LiteLLM's price file holds similar
numbers but comes with a very large dependency and no price history.

What this module guarantees:

- `database_rates(provider_id, model, tier, at)` gives the rates the database lists for one model in
  one tier on the date ``at`` (the attempt's own time, passed in: this module reads no clock),
  or ``None`` when the database does not know the model or has no price for that tier *on
  that date*. A tier the database lists only from some date (its batch prices start on
  2026-10-14) is never silently priced at the standard rate before that date.
- Rates come back as `costs.TieredRates` (floats, USD per million tokens): the arithmetic is
  done in ``core/costs.py`` only. Long-context prices (the database's threshold tiers: once a
  prompt passes the threshold every token is billed at the higher rate) are kept.
- Results are cached per (provider id, model, tier, minute), so pricing a million attempts costs a
  dictionary look-up each, not a database search.
- genai-prices (0.3 s to import) is imported on the first price asked for, never by views that
  only read stored costs (``status``, ``ps``).

No network: prices come from the data bundled with the installed package, or from a snapshot
``octopipe models --refresh`` saved (loaded by `use_snapshot_file`).
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from octopipe.core.costs import Rates, Tier, TieredRates

DATABASE = "genai-prices"


TIER_CONTEXT: dict[Tier, dict[str, str] | None] = {
    "standard": None,
    "batch": {"processing": "batch"},
    "flex": {"service_tier": "flex"},
    "priority": {"service_tier": "priority"},
}
"""The database's request context for each tier (``None``: its standard price)."""

_KEYS = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cached_input": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
}

_state: dict[str, Any] = {"snapshot_file": None, "snapshot_time": None}


def database_version() -> str:
    """``genai-prices 0.2.3`` plus where its data came from (bundled, or a refresh)."""
    import genai_prices

    when = _state["snapshot_time"]
    data = "bundled data" if when is None else f"data refreshed {when}"
    return f"{DATABASE} {genai_prices.__version__} ({data})"


def use_snapshot_file(path: Path) -> bool:
    """Price from the database snapshot saved at ``path`` (by ``models --refresh``) when it
    exists and parses; ``False`` (bundled data stays in use) otherwise."""
    if not path.is_file():
        return False
    from genai_prices import data_snapshot
    from genai_prices.types import _providers_from_raw

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        providers = _providers_from_raw(raw["providers"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers, from_auto_update=True))
    _state["snapshot_file"], _state["snapshot_time"] = str(path), raw.get("fetched_at")
    database_rates.cache_clear()
    _model.cache_clear()
    return True


def database_models(provider_id: str | None) -> list[Any]:
    """The database's models of its provider ``provider_id`` (the registry's
    ``price_database_id``: its ``ModelInfo`` objects); [] for one it does not know."""
    from genai_prices import data_snapshot

    for provider in data_snapshot.get_snapshot().providers:
        if provider.id == provider_id:
            return list(provider.models)
    return []


@functools.lru_cache(maxsize=4096)
def _model(provider_id: str | None, model: str) -> Any:
    from genai_prices import data_snapshot

    if provider_id is None:
        return None
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
    return info


def database_model_id(provider_id: str | None, model: str) -> str | None:
    """The database's id for ``model`` (it matches dated versions and aliases), or ``None``."""
    info = _model(provider_id, model)
    return None if info is None else str(info.id)


def _minute(at: datetime | None) -> datetime:
    when = datetime.now(UTC) if at is None else at
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).replace(second=0, microsecond=0)


def rates_at(
    provider_id: str | None, model: str, tier: Tier, at: datetime | None
) -> TieredRates | None:
    """`database_rates` at ``at`` (``None``: now -- only for views of today's prices)."""
    return database_rates(provider_id, model, tier, _minute(at))


@functools.lru_cache(maxsize=16384)
def database_rates(
    provider_id: str | None, model: str, tier: Tier, at: datetime
) -> TieredRates | None:
    """The database's rates of ``model`` in ``tier`` at ``at`` (see the module doc)."""
    info = _model(provider_id, model)
    if info is None:
        return None
    context = TIER_CONTEXT[tier]
    if context is not None and not _variant_active(info, context, at):
        return None
    price = info.get_prices(at, context)
    return _as_rates(price, f"{DATABASE}:{info.id}")


def _variant_active(info: Any, context: dict[str, str], at: datetime) -> bool:
    for variant in info.price_variants or ():
        if variant.when != context:
            continue
        if variant.constraint is None or variant.constraint.active(at):
            return True
    return False


def _as_rates(price: Any, source: str) -> TieredRates | None:
    values = {field: getattr(price, key, None) for field, key in _KEYS.items()}
    if values["input"] is None or values["output"] is None:
        return None  # not a token-priced model (images, audio seconds...)
    starts = sorted(
        {t.start for v in values.values() if v is not None and hasattr(v, "tiers") for t in v.tiers}
    )

    def at_threshold(total_input: int) -> Rates:
        def one(value: Any) -> float | None:
            if value is None:
                return None
            if not hasattr(value, "tiers"):
                return _num(value)
            chosen = value.base
            for tier in value.tiers:
                if total_input > tier.start:
                    chosen = tier.price
            return _num(chosen)

        rates = {field: one(value) for field, value in values.items()}
        return Rates(
            input=rates["input"] or 0.0,
            output=rates["output"] or 0.0,
            cached_input=rates["cached_input"],
            cache_write=rates["cache_write"],
        )

    return TieredRates(
        base=at_threshold(0),
        above=tuple((start, at_threshold(start + 1)) for start in starts),
        source=source,
    )


def _num(value: Decimal) -> float:
    return float(value)


__all__ = [
    "DATABASE",
    "TIER_CONTEXT",
    "database_model_id",
    "database_models",
    "database_rates",
    "database_version",
    "rates_at",
    "use_snapshot_file",
]
