"""Cache writes: the adapters read the vendor's cache-write count into
``Usage.cache_write_tokens`` and the call is priced with it at the cache-write rate, equal to
the price database's own ``calc_price`` for the same usage (golden)."""

from __future__ import annotations

from typing import Any

import pytest
from genai_prices import Usage as DbUsage
from genai_prices import calc_price

from octopipe.core.costs import cost_usd
from octopipe.core.registry import load_registry
from octopipe.emulator import EmulatorConfig, run_emulator
from octopipe.providers.anthropic_adapter import anthropic_usage
from octopipe.providers.openai_adapter import openai_usage
from support.providers import make_request

LONG_PROMPT = "word " * 4_000  # 5_000 tokens by the emulator's count
WRITES, READS = 1_200, 300


@pytest.mark.parametrize(
    ("name", "writes"), [("anthropic", WRITES), ("openai", WRITES), ("gemini", 0)]
)
async def test_the_adapter_reports_the_emulators_cache_writes(
    name: str, writes: int, connect: Any
) -> None:
    config = EmulatorConfig(cached_input_tokens=READS, cache_write_tokens=WRITES)
    async with run_emulator(config) as emu:
        response = await connect(emu, name).complete(make_request(prompt=LONG_PROMPT))
    assert response.usage.cached_input_tokens == READS
    assert response.usage.cache_write_tokens == writes
    assert response.usage.input_tokens == 5_000  # reads and writes counted in, every vendor


async def test_an_anthropic_call_with_cache_writes_costs_what_calc_price_says(
    connect: Any,
) -> None:
    config = EmulatorConfig(cached_input_tokens=READS, cache_write_tokens=WRITES)
    async with run_emulator(config) as emu:
        response = await connect(emu, "anthropic").complete(make_request(prompt=LONG_PROMPT))
    usage = response.usage
    ours = cost_usd(load_registry(), "anthropic", "claude-sonnet-4-5", usage)
    theirs = calc_price(
        DbUsage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=READS,
            cache_write_tokens=WRITES,
            output_tokens=usage.output_tokens,
        ),
        "claude-sonnet-4-5",
        provider_id="anthropic",
    ).total_price
    without_writes = calc_price(
        DbUsage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=READS,
            output_tokens=usage.output_tokens,
        ),
        "claude-sonnet-4-5",
        provider_id="anthropic",
    ).total_price
    assert ours == pytest.approx(float(theirs), rel=1e-12)
    assert ours != pytest.approx(float(without_writes), rel=1e-6)  # writes have their own rate


class _Obj:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def test_anthropic_usage_maps_cache_creation_input_tokens() -> None:
    raw = _Obj(
        input_tokens=100,
        output_tokens=7,
        cache_read_input_tokens=20,
        cache_creation_input_tokens=30,
    )
    usage = anthropic_usage(raw)
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (
        150,
        20,
        30,
    )


def test_openai_usage_without_cache_write_details_has_none() -> None:
    raw = _Obj(prompt_tokens=100, completion_tokens=7, prompt_tokens_details=_Obj(cached_tokens=20))
    usage = openai_usage(raw)
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (100, 20, 0)
