"""User price files: prices that override or add to the price database.

Two places (both optional): ``~/.config/octopipe/prices.yaml`` (the user's own) and the path a
pipeline names under ``prices:`` in its ``config.yaml`` (inside the pipeline folder, like every
file it names). The pipeline's file wins over the user's, which wins over the database. The
format, USD per million tokens::

    openai:                       # a provider: openai, anthropic, gemini, openai-compatible
      ft:gpt-4o-mini:acme:        # a model id as the step names it
        standard: {input: 0.30, cached_input: 0.15, output: 1.20}
        batch: {input: 0.15, output: 0.60}
        flex: {input: 0.15, output: 0.60}          # optional, like priority
        long_context: {above_input_tokens: 200000, standard: {input: 0.60, output: 2.40}}
        source: "our contract, 2026-11"           # optional: shown by `octopipe models`

An entry replaces the database's prices for that model in *every* tier: a tier it does not
give has an unknown price (so a cost cap in that tier is refused, never guessed).
``cache_write`` is the price of a prompt token written to the cache (default: ``input``).

`parse_price_file` raises `ConfigError` naming the file, the line and the key of each problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from octopipe.core import yamlpos
from octopipe.core.costs import Rates, Tier, TieredRates
from octopipe.errors import ConfigError, ConfigProblem


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RatesEntry(_Frozen):
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)

    def rates(self) -> Rates:
        return Rates(self.input, self.output, self.cached_input, self.cache_write)


class LongContextEntry(_Frozen):
    above_input_tokens: int = Field(gt=0)
    standard: RatesEntry | None = None
    batch: RatesEntry | None = None
    flex: RatesEntry | None = None
    priority: RatesEntry | None = None


class ModelPrices(_Frozen):
    standard: RatesEntry
    batch: RatesEntry | None = None
    flex: RatesEntry | None = None
    priority: RatesEntry | None = None
    long_context: LongContextEntry | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _long_tiers_priced(self) -> ModelPrices:
        long = self.long_context
        if long is not None:
            for tier in ("standard", "batch", "flex", "priority"):
                if getattr(long, tier) is not None and getattr(self, tier) is None:
                    raise ValueError(f"long_context.{tier} is given but {tier} is not")
        return self


@dataclass(frozen=True)
class ModelOverride:
    """One model's prices from a price file, per tier."""

    tiers: Mapping[Tier, TieredRates]
    source: str


@dataclass(frozen=True)
class PriceOverrides:
    """Prices from price files, by (provider, model); later files win."""

    models: Mapping[tuple[str, str], ModelOverride] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def find(self, provider: str, model: str) -> ModelOverride | None:
        return self.models.get((provider, model))

    def layered_over(self, other: PriceOverrides) -> PriceOverrides:
        """``other``'s prices in front of these."""
        return PriceOverrides({**self.models, **other.models}, (*self.files, *other.files))


def _tiers(entry: ModelPrices, source: str) -> dict[Tier, TieredRates]:
    out: dict[Tier, TieredRates] = {}
    tiers: tuple[Tier, ...] = ("standard", "batch", "flex", "priority")
    for tier in tiers:
        base = getattr(entry, tier)
        if base is None:
            continue
        above: tuple[tuple[int, Rates], ...] = ()
        long = entry.long_context
        if long is not None and getattr(long, tier) is not None:
            above = ((long.above_input_tokens, getattr(long, tier).rates()),)
        out[tier] = TieredRates(base.rates(), above, source)
    return out


def parse_price_file(text: str, file: str, providers: Sequence[str]) -> PriceOverrides:
    """The prices of one price file; ``file`` names it in messages and as the price source;
    ``providers`` are the names it may use (the registry's ``price_file_providers()``)."""
    data, positions = yamlpos.load_yaml_with_positions(text, file)
    lines = positions.lines
    if data is None:
        return PriceOverrides(files=(file,))
    problems: list[ConfigProblem] = []
    models: dict[tuple[str, str], ModelOverride] = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigProblem(file, 1, "", "a price file maps providers to models to prices")]
        )
    for provider, entries in data.items():
        where = str(provider)
        if provider not in providers:
            problems.append(
                ConfigProblem(
                    file,
                    lines.get((where,)),
                    where,
                    f"unknown provider {provider!r}; expected one of {', '.join(providers)}",
                )
            )
            continue
        if not isinstance(entries, dict):
            problems.append(
                ConfigProblem(file, lines.get((where,)), where, "expected models and prices")
            )
            continue
        for model, raw in entries.items():
            path = (where, str(model))
            try:
                entry = ModelPrices.model_validate(raw)
            except ValidationError as exc:
                problems.extend(_problems(file, lines, path, exc))
                continue
            source = entry.source or file
            models[(str(provider), str(model))] = ModelOverride(_tiers(entry, source), source)
    if problems:
        raise ConfigError(problems)
    return PriceOverrides(models, (file,))


def _problems(
    file: str,
    lines: Mapping[tuple[str | int, ...], int],
    path: tuple[str, ...],
    exc: ValidationError,
) -> list[ConfigProblem]:
    out = []
    for error in exc.errors():
        loc = (*path, *(str(part) for part in error["loc"]))
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
        out.append(ConfigProblem(file, line, ".".join(loc), _message(error)))
    return out


def _message(error: Any) -> str:
    text = str(error["msg"])
    return text.removeprefix("Value error, ")


__all__ = [
    "ModelOverride",
    "ModelPrices",
    "PriceOverrides",
    "parse_price_file",
]
