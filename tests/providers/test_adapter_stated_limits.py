"""The realtime adapters hand back the account limits stated in the vendors' headers, with
each answer and with each 429 refusal."""

from __future__ import annotations

from typing import Any

import pytest

from octopipe.emulator import EmulatorConfig, run_emulator
from octopipe.errors import RateLimited
from support.providers import make_request

STATING = ("openai", "openai-compatible", "anthropic")


@pytest.mark.parametrize("name", STATING)
async def test_answers_carry_the_stated_limits(name: str, connect: Any) -> None:
    config = EmulatorConfig(account_rpm=50, account_tpm=90_000)
    async with run_emulator(config) as emu:
        provider = connect(emu, name)
        first = await provider.complete(make_request())
        second = await provider.complete(make_request())
    assert first.stated_limits is not None and second.stated_limits is not None
    assert first.stated_limits.requests_limit == 50
    assert first.stated_limits.tokens_limit == 90_000
    assert first.stated_limits.requests_remaining == 49
    assert second.stated_limits.requests_remaining == 48
    used = first.usage.input_tokens + first.usage.output_tokens
    assert second.stated_limits.tokens_remaining is not None
    assert second.stated_limits.tokens_remaining <= 90_000 - used
    assert first.stated_limits.requests_reset_s is not None
    assert 0 <= first.stated_limits.requests_reset_s <= 61


@pytest.mark.parametrize("name", STATING)
async def test_a_429_carries_the_stated_limits(name: str, connect: Any) -> None:
    async with run_emulator(EmulatorConfig(account_rpm=1)) as emu:
        provider = connect(emu, name)
        await provider.complete(make_request())
        with pytest.raises(RateLimited) as refused:
            await provider.complete(make_request())
    stated = refused.value.stated_limits
    assert stated is not None
    assert stated.requests_limit == 1 and stated.requests_remaining == 0
    assert refused.value.retry_after is not None and refused.value.retry_after >= 1


async def test_gemini_states_no_limits(connect: Any) -> None:
    async with run_emulator(EmulatorConfig(account_rpm=50)) as emu:
        response = await connect(emu, "gemini").complete(make_request())
    assert response.stated_limits is None


@pytest.mark.parametrize("name", STATING)
async def test_no_account_limits_means_none_stated(name: str, connect: Any) -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        response = await connect(emu, name).complete(make_request())
    assert response.stated_limits is None


@pytest.mark.parametrize("name", STATING)
async def test_an_injected_429_without_headers_states_none(name: str, connect: Any) -> None:
    async with run_emulator(EmulatorConfig()) as emu:
        emu.inject("429")
        with pytest.raises(RateLimited) as refused:
            await connect(emu, name).complete(make_request())
    assert refused.value.stated_limits is None
