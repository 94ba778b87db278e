"""Tokens x prices -> dollars: the only module that does arithmetic on prices.

Octobatch recomputed cost in six places with different fallbacks, one of which priced an
unknown model with hard-coded Flash rates and showed a $1,856 run as ~$109. Here there is one
formula, and a model the registry does not list has an **unknown** cost (``None``), never a
guessed one. Callers sum known costs and count unknown ones separately.

Prices live in the registry (``providers/registry.yaml``) under ``per_million_usd``; the schema
of that mapping is defined here (`PriceTable`) so that rates are read, derived and multiplied
in this module only. A batch price is the explicit ``batch`` rate when the registry gives one,
else the realtime rate times the provider's ``batch_discount``; a provider without a discount
(no batch API) has no batch price, so batch cost there is unknown.

Cached prompt tokens. Each vendor reports prompt-cache hits differently:

- OpenAI: ``usage.prompt_tokens`` (chat) / ``input_tokens`` (responses, batch) *include*
  ``prompt_tokens_details.cached_tokens``.
- Gemini: ``usageMetadata.promptTokenCount`` *includes* ``cachedContentTokenCount``.
- Anthropic: ``usage.input_tokens`` *excludes* ``cache_read_input_tokens`` (and
  ``cache_creation_input_tokens``).

The provider adapters normalise this (``providers.base.Usage``: ``input_tokens`` counts every
prompt token, ``cached_input_tokens`` the part served from cache), so `cost_usd` assumes
``cached_included=True`` by default. To price a vendor's raw numbers, pass
``cached_included=`` the provider spec's ``raw_input_includes_cached``
(``providers/catalog.py``). Cached tokens are billed at the model's
``cached_input`` rate (or the input rate when the registry gives none: never less than the
vendor charges); the rest of the prompt at the input rate. Anthropic cache *writes* are billed
at the input rate here (the vendor charges 1.25x); octopipe does not request cache writes.

Long context. Some models charge more for a whole request whose prompt exceeds a threshold
(Gemini 2.5 Pro, Claude Sonnet 4.x over 200K tokens); `PriceTable.long_context` holds those
rates, chosen per request from its prompt size (cached tokens included).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, cast, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

Mode = Literal["realtime", "batch"]
MODES: tuple[Mode, ...] = ("realtime", "batch")

PRICES_KEY = "per_million_usd"
"""The registry key under which a model's prices (USD per million tokens) are given."""
TOKENS_PER_PRICE_UNIT = 1_000_000

CHARS_PER_TOKEN = 4


# --- the price schema (the ``per_million_usd`` mapping of a registry model) ---------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rates(_Frozen):
    """USD per million tokens in one mode."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    """A prompt token served from the vendor's cache; absent: billed at ``input``."""

    @property
    def cached(self) -> float:
        """The rate a cached prompt token is billed at."""
        return self.input if self.cached_input is None else self.cached_input

    @model_validator(mode="after")
    def _cache_not_dearer(self) -> Rates:
        if self.cached_input is not None and self.cached_input > self.input:
            raise ValueError("cached_input must not exceed input")
        return self


def _check_not_dearer(lower: Rates | None, upper: Rates, what: str) -> None:
    if lower is None:
        return
    pairs = [("input", lower.input, upper.input), ("output", lower.output, upper.output)]
    if lower.cached_input is not None:  # without one, batch cache hits cost the batch input
        pairs.append(("cached_input", lower.cached_input, upper.cached))
    for field, low, high in pairs:
        if low > high:
            raise ValueError(f"{what} {field} price exceeds the realtime price")


class LongContextRates(_Frozen):
    """Rates for a request whose prompt has more than ``above_input_tokens`` tokens."""

    above_input_tokens: int = Field(gt=0)
    realtime: Rates
    batch: Rates | None = None

    @model_validator(mode="after")
    def _batch_not_dearer(self) -> LongContextRates:
        _check_not_dearer(self.batch, self.realtime, "long-context batch")
        return self


class PriceTable(_Frozen):
    """A model's prices: realtime, optional explicit batch, optional long-context tier."""

    realtime: Rates
    batch: Rates | None = None
    """Explicit batch rates; absent: realtime x the provider's ``batch_discount``."""
    long_context: LongContextRates | None = None

    @model_validator(mode="after")
    def _batch_not_dearer(self) -> PriceTable:
        _check_not_dearer(self.batch, self.realtime, "batch")
        return self


# --- what can be priced -----------------------------------------------------------------------


@runtime_checkable
class PricedModel(Protocol):
    """A registry model: its price table and the batch discount that applies to it."""

    @property
    def prices(self) -> PriceTable: ...

    @property
    def batch_discount(self) -> float | None: ...


class PriceCatalog(Protocol):
    """Something that finds a model's prices (``core.registry.Registry``)."""

    def model(self, provider: str, model: str) -> PricedModel | None: ...


PriceSource = PriceCatalog | PricedModel


class TokenUsage(Protocol):
    """Token counts of one call. Cache hits are read from ``cached_input_tokens`` (the
    adapters' ``Usage``) or ``cached_tokens`` (ledger rows, `TokenCounts`) when present."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...


@dataclass(frozen=True)
class TokenCounts:
    """Plain token counts, for callers that have numbers rather than a response."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0


def cached_tokens_of(usage: TokenUsage) -> int:
    """The cache-hit count of ``usage`` (0 when it has none)."""
    for name in ("cached_input_tokens", "cached_tokens"):
        value = getattr(usage, name, None)
        if value is not None:
            return int(value)
    return 0


# --- rates and cost ---------------------------------------------------------------------------


def _scaled(rates: Rates, factor: float) -> Rates:
    def scale(value: float) -> float:
        return round(value * factor, 12)  # no binary noise such as 0.30000000000000004

    return Rates(
        input=scale(rates.input),
        output=scale(rates.output),
        cached_input=None if rates.cached_input is None else scale(rates.cached_input),
    )


def _in_mode(
    realtime: Rates, batch: Rates | None, discount: float | None, mode: Mode
) -> Rates | None:
    if mode == "realtime":
        return realtime
    if batch is not None:
        return batch
    return None if discount is None else _scaled(realtime, discount)


def effective_rates(info: PricedModel, mode: Mode, prompt_tokens: int = 0) -> Rates | None:
    """The rates a request with ``prompt_tokens`` prompt tokens is billed at in ``mode``.

    ``None`` when the model has no price in that mode (batch on a provider without a batch
    discount and without explicit batch rates).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    table = info.prices
    long = table.long_context
    if long is not None and prompt_tokens > long.above_input_tokens:
        return _in_mode(long.realtime, long.batch, info.batch_discount, mode)
    return _in_mode(table.realtime, table.batch, info.batch_discount, mode)


def _priced_model(source: PriceSource | None, provider: str, model: str) -> PricedModel | None:
    if source is None:
        return None
    # A catalog has ``model()``; a model has ``prices``. (isinstance against the runtime-checkable
    # protocol costs ~20 µs a call: 8% of a batch collection's CPU.)
    find = getattr(source, "model", None)
    if callable(find):
        return cast(PriceCatalog, source).model(provider, model)
    return cast(PricedModel, source)


def cost_usd(
    source: PriceSource | None,
    provider: str,
    model: str,
    usage: TokenUsage,
    mode: Mode = "realtime",
    *,
    cached_included: bool = True,
) -> float | None:
    """What one call cost in US dollars, or ``None`` when the price is unknown.

    ``source`` is the registry (the model is looked up by ``provider`` and ``model``) or a
    model's registry entry (then ``provider`` and ``model`` only label the call).
    ``cached_included`` says whether ``usage.input_tokens`` already counts the cached tokens
    (true for the adapters' normalised usage; see `raw_usage_includes_cached`).
    """
    info = _priced_model(source, provider, model)
    if info is None:
        return None
    input_tokens, output_tokens = int(usage.input_tokens), int(usage.output_tokens)
    cached = cached_tokens_of(usage)
    if min(input_tokens, output_tokens, cached) < 0:
        raise ValueError(f"negative token count in {usage!r}")
    if cached_included:
        cached = min(cached, input_tokens)
        prompt_tokens, fresh = input_tokens, input_tokens - cached
    else:
        prompt_tokens, fresh = input_tokens + cached, input_tokens
    rates = effective_rates(info, mode, prompt_tokens)
    if rates is None:
        return None
    dollars = fresh * rates.input + cached * rates.cached + output_tokens * rates.output
    return dollars / TOKENS_PER_PRICE_UNIT


# --- pre-run estimate -------------------------------------------------------------------------


class StepLoad(NamedTuple):
    """The projected work of one LLM step (a plain 6-tuple in this order works too)."""

    step: str
    provider: str
    model: str
    calls: int
    prompt_tokens_each: int
    output_tokens_each: int


@dataclass(frozen=True)
class StepEstimate:
    step: str
    provider: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """``None``: the model's price is unknown."""


@dataclass(frozen=True)
class Estimate:
    """A run's projected cost. ``total_usd`` is ``None`` as soon as one step is unknown;
    ``known_usd`` is then a lower bound (the sum of the steps that are priced)."""

    mode: Mode
    per_step: tuple[StepEstimate, ...]
    total_usd: float | None
    known_usd: float
    unknown_steps: tuple[str, ...]

    @property
    def input_tokens(self) -> int:
        return sum(line.input_tokens for line in self.per_step)

    @property
    def output_tokens(self) -> int:
        return sum(line.output_tokens for line in self.per_step)


def estimate_run(
    source: PriceSource | None,
    steps: Iterable[StepLoad | tuple[str, str, str, int, int, int]],
    mode: Mode,
) -> Estimate:
    """Price the projected calls of every LLM step in ``mode``, assuming no cache hits (so
    the estimate is an upper bound on what caching could save). Each request is priced on
    its own prompt size, so long-context tiers apply as they would."""
    lines: list[StepEstimate] = []
    for load in (StepLoad(*s) for s in steps):
        if min(load.calls, load.prompt_tokens_each, load.output_tokens_each) < 0:
            raise ValueError(f"negative count in {load!r}")
        one_call = cost_usd(
            source,
            load.provider,
            load.model,
            TokenCounts(load.prompt_tokens_each, load.output_tokens_each),
            mode,
        )
        lines.append(
            StepEstimate(
                step=load.step,
                provider=load.provider,
                model=load.model,
                calls=load.calls,
                input_tokens=load.calls * load.prompt_tokens_each,
                output_tokens=load.calls * load.output_tokens_each,
                cost_usd=None if one_call is None else one_call * load.calls,
            )
        )
    known = math.fsum(line.cost_usd for line in lines if line.cost_usd is not None)
    unknown = tuple(line.step for line in lines if line.cost_usd is None)
    return Estimate(
        mode=mode,
        per_step=tuple(lines),
        total_usd=None if unknown else known,
        known_usd=known,
        unknown_steps=unknown,
    )


def estimate_tokens(text: str) -> int:
    """A rough token count of ``text``: about one token per 4 characters (English prose with
    the vendors' BPE tokenizers). An *estimate* for forecasts and pacing, never for billing:
    code, JSON and non-Latin scripts use more tokens per character."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


# --- presentation -----------------------------------------------------------------------------


def price_summary(info: PricedModel) -> dict[str, Any]:
    """A model's effective prices as plain data (for ``octopipe models --json``): realtime
    and batch rates (batch derived when not explicit), and the long-context tier."""

    def rates(r: Rates | None) -> dict[str, float | None] | None:
        if r is None:
            return None
        return {"input": r.input, "cached_input": r.cached, "output": r.output}

    table = info.prices
    summary: dict[str, Any] = {
        "realtime": rates(effective_rates(info, "realtime")),
        "batch": rates(effective_rates(info, "batch")),
        "batch_derived": table.batch is None,
        "long_context": None,
    }
    if table.long_context is not None:
        above = table.long_context.above_input_tokens
        summary["long_context"] = {
            "above_input_tokens": above,
            "realtime": rates(effective_rates(info, "realtime", above + 1)),
            "batch": rates(effective_rates(info, "batch", above + 1)),
        }
    return {PRICES_KEY: summary}
