"""Tokens x prices -> dollars: the only module that does arithmetic on prices.

Octobatch recomputed cost in six places with different fallbacks, one of which priced an
unknown model with hard-coded Flash rates and showed a $1,856 run as ~$109. Here there is one
formula, and a model no price source lists has an **unknown** cost (``None``), never a guessed
one. Callers sum known costs and count unknown ones separately.

Where prices come from (`PriceCatalog`, implemented by ``core.registry.Registry``): a user
price file or the pipeline's ``prices:`` file first, then the maintained price database
(``core/price_db.py``: genai-prices), then -- for batch only, when the database has no batch
price for the model on that date -- the standard price times the vendor's documented batch
discount (``providers/registry.yaml``). Each call is priced in its **tier** (`TIERS`:
standard, batch, flex, priority) at its own time ``at``.

Token counts. The provider adapters normalise usage (``providers.base.Usage``): ``input_tokens``
counts every prompt token, ``cached_input_tokens`` the part read from the vendor's prompt cache
and ``cache_write_tokens`` the part written to it. Vendors report these differently:

- OpenAI: ``usage.prompt_tokens`` (chat) / ``input_tokens`` (responses, batch) *include*
  ``prompt_tokens_details.cached_tokens``.
- Gemini: ``usageMetadata.promptTokenCount`` *includes* ``cachedContentTokenCount``.
- Anthropic: ``usage.input_tokens`` *excludes* ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens``.

The adapters normalise usage, so `cost_usd` assumes ``cached_included=True``; to price a vendor's raw numbers pass
``cached_included=`` the provider spec's ``raw_input_includes_cached``
(``providers/catalog.py``). Cache reads are billed at the
``cached_input`` rate and cache writes at ``cache_write`` (each at the input rate when the
source gives none: never less than the vendor charges); the rest of the prompt at ``input``.

Long context. Some models charge more for a whole request whose prompt exceeds a threshold
(Gemini 2.5 Pro, Claude Sonnet 4.x over 200K tokens): `TieredRates.above` holds those rates,
chosen per request from its prompt size (cache reads and writes included), as the database
does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple, Protocol

Mode = Literal["realtime", "batch"]
MODES: tuple[Mode, ...] = ("realtime", "batch")

Tier = Literal["standard", "batch", "flex", "priority"]
TIERS: tuple[Tier, ...] = ("standard", "batch", "flex", "priority")
"""Service tiers a call can be served in (and priced at)."""

TOKENS_PER_PRICE_UNIT = 1_000_000

CHARS_PER_TOKEN = 4


def tier_of(mode: Mode) -> Tier:
    """The tier a call in ``mode`` is served in unless it asked for another (flex)."""
    return "batch" if mode == "batch" else "standard"


# --- rates ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    """USD per million tokens. ``cached_input`` / ``cache_write`` ``None``: the input rate."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    @property
    def cached(self) -> float:
        """The rate a prompt token read from the cache is billed at."""
        return self.input if self.cached_input is None else self.cached_input

    @property
    def write(self) -> float:
        """The rate a prompt token written to the cache is billed at."""
        return self.input if self.cache_write is None else self.cache_write

    def scaled(self, factor: float) -> Rates:
        def scale(value: float | None) -> float | None:
            return None if value is None else round(value * factor, 12)

        return Rates(
            input=scale(self.input) or 0.0,
            output=scale(self.output) or 0.0,
            cached_input=scale(self.cached_input),
            cache_write=scale(self.cache_write),
        )


@dataclass(frozen=True)
class TieredRates:
    """One model's rates in one tier: ``base``, and for a request whose prompt has more than
    ``start`` tokens the rates of the highest such ``(start, rates)`` in ``above``.
    ``source`` names where they come from (``genai-prices:gpt-5-mini``, a price file)."""

    base: Rates
    above: tuple[tuple[int, Rates], ...] = ()
    source: str = ""

    def for_prompt(self, prompt_tokens: int) -> Rates:
        chosen = self.base
        for start, rates in self.above:
            if prompt_tokens > start:
                chosen = rates
        return chosen

    def scaled(self, factor: float, source: str) -> TieredRates:
        return TieredRates(
            self.base.scaled(factor),
            tuple((start, rates.scaled(factor)) for start, rates in self.above),
            source,
        )


class PriceCatalog(Protocol):
    """Something that finds a model's rates in a tier at a time (``core.registry.Registry``)."""

    def rates(
        self, provider: str, model: str, tier: Tier, at: datetime | None = None
    ) -> TieredRates | None: ...


class TokenUsage(Protocol):
    """Token counts of one call. Cache reads are read from ``cached_input_tokens`` (the
    adapters' ``Usage``) or ``cached_tokens`` (ledger rows, `TokenCounts`), cache writes from
    ``cache_write_tokens``, when present."""

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
    cache_write_tokens: int = 0


def cached_tokens_of(usage: TokenUsage) -> int:
    """The cache-read count of ``usage`` (0 when it has none)."""
    for name in ("cached_input_tokens", "cached_tokens"):
        value = getattr(usage, name, None)
        if value is not None:
            return int(value)
    return 0


def cache_writes_of(usage: TokenUsage) -> int:
    """The cache-write count of ``usage`` (0 when it has none)."""
    return int(getattr(usage, "cache_write_tokens", 0) or 0)


# --- cost -------------------------------------------------------------------------------------


def cost_usd(
    source: PriceCatalog | None,
    provider: str,
    model: str,
    usage: TokenUsage,
    mode: Mode = "realtime",
    *,
    tier: Tier | None = None,
    at: datetime | None = None,
    cached_included: bool = True,
) -> float | None:
    """What one call cost in US dollars, or ``None`` when its price is unknown.

    ``tier`` is the tier that served the call (default: ``standard`` in realtime, ``batch`` in
    batch); ``at`` when it was made (prices change; ``None``: today's price).
    ``cached_included`` says whether ``usage.input_tokens`` already counts cache reads and
    writes (true for the adapters' normalised usage; see the provider spec's `raw_input_includes_cached`).
    """
    if source is None:
        return None
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    rates = source.rates(provider, model, tier or tier_of(mode), at)
    if rates is None:
        return None
    return priced(rates, usage, cached_included=cached_included)


class AttemptCost(NamedTuple):
    """What one call cost in the tier that served it, and the same usage at the standard
    (realtime) price -- the difference is what batch or flex saved. ``None``: unknown."""

    tier: Tier
    cost_usd: float | None
    standard_usd: float | None


def attempt_cost(
    source: PriceCatalog | None,
    provider: str,
    model: str,
    usage: TokenUsage,
    tier: Tier,
    at: datetime | None,
) -> AttemptCost:
    """`cost_usd` of one call in ``tier`` at ``at``, with its standard-price equivalent."""
    mode: Mode = "batch" if tier == "batch" else "realtime"
    cost = cost_usd(source, provider, model, usage, mode, tier=tier, at=at)
    standard = (
        cost
        if tier == "standard"
        else cost_usd(source, provider, model, usage, "realtime", tier="standard", at=at)
    )
    return AttemptCost(tier, cost, standard)


def priced(rates: TieredRates, usage: TokenUsage, *, cached_included: bool = True) -> float:
    """``usage`` at ``rates`` in US dollars (the one formula; see the module doc)."""
    input_tokens, output_tokens = int(usage.input_tokens), int(usage.output_tokens)
    cached, writes = cached_tokens_of(usage), cache_writes_of(usage)
    if min(input_tokens, output_tokens, cached, writes) < 0:
        raise ValueError(f"negative token count in {usage!r}")
    if cached_included:
        cached = min(cached, input_tokens)
        writes = min(writes, input_tokens - cached)
        prompt_tokens = input_tokens
    else:
        prompt_tokens = input_tokens + cached + writes
    fresh = prompt_tokens - cached - writes
    r = rates.for_prompt(prompt_tokens)
    dollars = fresh * r.input + cached * r.cached + writes * r.write + output_tokens * r.output
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
    tier: Tier | None = None
    """The tier priced, when not the mode's own (``flex``)."""

    @property
    def input_tokens(self) -> int:
        return sum(line.input_tokens for line in self.per_step)

    @property
    def output_tokens(self) -> int:
        return sum(line.output_tokens for line in self.per_step)


def estimate_run(
    source: PriceCatalog | None,
    steps: Iterable[StepLoad | tuple[str, str, str, int, int, int]],
    mode: Mode,
    *,
    tier: Tier | None = None,
    at: datetime | None = None,
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
            tier=tier,
            at=at,
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
        tier=tier,
    )


def estimate_tokens(text: str) -> int:
    """A rough token count of ``text``: about one token per 4 characters (English prose with
    the vendors' BPE tokenizers). An *estimate* for forecasts and pacing, never for billing:
    code, JSON and non-Latin scripts use more tokens per character."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)
