"""A run's cost split by tier and by model, with what the same answers would have cost in
realtime at standard prices (the saving of batch and flex), for ``status`` and ``report``.

It folds the ledger's `TierCost` rows (``store/reads.cost_by_tier``); it does no arithmetic
on prices (the attempts' costs and standard-price equivalents were priced once, by
``core/costs.py``, when they were recorded). Unknown stays unknown: a group with one call of
unknown price has cost ``None`` (``known_usd`` is then a lower bound), and the saving is
``None`` as soon as either side is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from octopipe.store.records import TierCost


@dataclass(frozen=True)
class CostLine:
    """One group's calls, tokens and money (``None``: unknown)."""

    key: str
    calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    known_usd: float
    unknown_calls: int
    standard_known_usd: float
    standard_unknown_calls: int

    @property
    def cost_usd(self) -> float | None:
        return None if self.unknown_calls else self.known_usd

    @property
    def standard_usd(self) -> float | None:
        return None if self.standard_unknown_calls else self.standard_known_usd

    @property
    def saving_usd(self) -> float | None:
        cost, standard = self.cost_usd, self.standard_usd
        return None if cost is None or standard is None else standard - cost

    def to_dict(self, name: str) -> dict[str, Any]:
        return {
            name: self.key,
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": _money(self.cost_usd),
            "known_cost_usd": _money(self.known_usd),
            "unknown_cost_calls": self.unknown_calls,
            "standard_cost_usd": _money(self.standard_usd),
            "saving_usd": _money(self.saving_usd),
        }


@dataclass(frozen=True)
class CostSplit:
    """``by_tier`` and ``by_model`` (``provider/model``) lines, and ``rows`` by both."""

    by_tier: tuple[CostLine, ...]
    by_model: tuple[CostLine, ...]
    rows: tuple[tuple[str, CostLine], ...]
    """(``provider/model``, line keyed by tier)."""
    total: CostLine

    def to_dict(self) -> dict[str, Any]:
        return {
            "cost_usd": _money(self.total.cost_usd),
            "known_cost_usd": _money(self.total.known_usd),
            "unknown_cost_calls": self.total.unknown_calls,
            "standard_cost_usd": _money(self.total.standard_usd),
            "saving_usd": _money(self.total.saving_usd),
            "by_tier": [line.to_dict("tier") for line in self.by_tier],
            "by_model": [line.to_dict("model") for line in self.by_model],
            "by_model_and_tier": [
                {"model": model, **line.to_dict("tier")} for model, line in self.rows
            ],
        }


def split_costs(rows: Iterable[TierCost]) -> CostSplit:
    rows = list(rows)

    def model_of(row: TierCost) -> str:
        return f"{row.provider}/{row.model}" if row.provider else row.model

    tiers = sorted({r.tier for r in rows}, key=_tier_order)
    models = sorted({model_of(r) for r in rows})
    return CostSplit(
        by_tier=tuple(_fold(t, [r for r in rows if r.tier == t]) for t in tiers),
        by_model=tuple(_fold(m, [r for r in rows if model_of(r) == m]) for m in models),
        rows=tuple((model_of(r), _fold(r.tier, [r])) for r in rows),
        total=_fold("total", rows),
    )


def _fold(key: str, rows: list[TierCost]) -> CostLine:
    return CostLine(
        key=key,
        calls=sum(r.calls for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cached_tokens=sum(r.cached_tokens for r in rows),
        known_usd=math.fsum(r.known_usd for r in rows),
        unknown_calls=sum(r.unknown_calls for r in rows),
        standard_known_usd=math.fsum(r.standard_known_usd for r in rows),
        standard_unknown_calls=sum(r.standard_unknown_calls for r in rows),
    )


_ORDER = ("standard", "flex", "batch", "priority")


def _tier_order(tier: str) -> tuple[int, str]:
    return (_ORDER.index(tier) if tier in _ORDER else len(_ORDER), tier)


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 12)


__all__ = ["CostLine", "CostSplit", "split_costs"]
