"""Contract tests: every realtime adapter, through its official SDK, over loopback HTTP."""

from __future__ import annotations

import json
import math
import socket
import time
from typing import Any

import jsonschema
import pytest

from octopipe.emulator import Emulator, EmulatorConfig, run_emulator
from octopipe.errors import (
    AuthError,
    BadRequest,
    ProviderError,
    ProviderTimeout,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
)
from octopipe.providers.base import ProviderSettings, RealtimeProvider
from octopipe.providers.catalog import make_provider
from support.providers import PROVIDERS, SECRET_KEY, VERDICT_SCHEMA, make_request

NATIVE_SCHEMA_FIELD = {
    "openai": "response_format",
    "openai-compatible": "response_format",
    "anthropic": "tool",
    "gemini": "responseJsonSchema",
}
STOP = {"openai": "stop", "openai-compatible": "stop", "anthropic": "end_turn", "gemini": "STOP"}
CUT = {
    "openai": "length",
    "openai-compatible": "length",
    "anthropic": "max_tokens",
    "gemini": "MAX_TOKENS",
}

pytestmark = pytest.mark.parametrize("name", PROVIDERS)


async def expect_failure(
    provider: RealtimeProvider, emu: Emulator, error: type[ProviderError], **request: Any
) -> Any:
    """Call once, expect ``error``; check that exactly one HTTP request was made (SDK retries
    off) and that neither the error nor a chained SDK exception can show the API key."""
    before = emu.stats()["requests_total"]
    with pytest.raises(error) as caught:
        await provider.complete(make_request(**request))
    assert emu.stats()["requests_total"] == before + 1
    assert SECRET_KEY not in str(caught.value)
    assert SECRET_KEY not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert caught.value.provider == provider.name
    return caught.value


async def test_plain_answer_maps_text_and_usage(name: str, connect: Any) -> None:
    async with run_emulator(EmulatorConfig(cached_input_tokens=3)) as emu:
        provider = connect(emu, name)
        response = await provider.complete(make_request(system="Be terse."))
        received = emu.requests[-1]
    assert response.text.startswith("Emulated answer")
    assert received.prompt == make_request().prompt
    assert received.system == "Be terse."
    assert received.schema is None
    prompt_chars = len("Be terse.") + len(received.prompt)
    assert response.usage.input_tokens == math.ceil(prompt_chars / 4)
    assert response.usage.output_tokens == math.ceil(len(response.text) / 4)
    assert response.usage.cached_input_tokens == 3
    assert response.finish_reason == STOP[name]
    assert response.model == "emu-model"
    assert response.request_id
    assert response.latency_s > 0


async def test_same_prompt_same_answer(name: str, emulator: Emulator, connect: Any) -> None:
    provider = connect(emulator, name)
    first = await provider.complete(make_request())
    second = await provider.complete(make_request())
    assert first.text == second.text


async def test_structured_output_uses_native_field(
    name: str, emulator: Emulator, connect: Any
) -> None:
    provider = connect(emulator, name)
    response = await provider.complete(make_request(schema=VERDICT_SCHEMA, schema_name="verdict"))
    received = emulator.requests[-1]
    assert received.structured_via == NATIVE_SCHEMA_FIELD[name]
    assert received.schema == VERDICT_SCHEMA
    jsonschema.validate(json.loads(response.text), VERDICT_SCHEMA)


async def test_structured_output_off_sends_no_schema(
    name: str, emulator: Emulator, connect: Any
) -> None:
    provider = connect(emulator, name)
    await provider.complete(make_request(schema=VERDICT_SCHEMA, structured_output=False))
    assert emulator.requests[-1].schema is None


async def test_answer_function_supplies_the_answer(name: str, connect: Any) -> None:
    def answer(request: Any) -> dict[str, Any]:
        return {"verdict": "pass", "score": 4, "reasons": [f"{request.vendor} read it"]}

    async with run_emulator(EmulatorConfig(answer_fn=answer)) as emu:
        response = await connect(emu, name).complete(make_request(schema=VERDICT_SCHEMA))
    vendor = "openai" if name == "openai-compatible" else name
    assert json.loads(response.text) == {
        "verdict": "pass",
        "score": 4,
        "reasons": [f"{vendor} read it"],
    }


async def test_max_tokens_cuts_the_answer(name: str, emulator: Emulator, connect: Any) -> None:
    response = await connect(emulator, name).complete(make_request(max_tokens=3))
    assert response.finish_reason == CUT[name]
    assert len(response.text) == 12
    assert emulator.requests[-1].max_tokens == 3


async def test_injected_429_is_rate_limited_with_retry_after(name: str, connect: Any) -> None:
    async with run_emulator(EmulatorConfig(retry_after_s=2.0)) as emu:
        emu.inject("429")
        error = await expect_failure(connect(emu, name), emu, RateLimited)
    assert error.retry_after == pytest.approx(2.0)
    assert error.status == 429


async def test_rpm_limit_refuses_with_time_until_a_slot_frees(name: str, connect: Any) -> None:
    async with run_emulator(EmulatorConfig(rpm=1, rpm_window_s=30.0)) as emu:
        provider = connect(emu, name)
        await provider.complete(make_request())
        error = await expect_failure(provider, emu, RateLimited)
        assert emu.stats()["rate_limited"] == 1
    assert 28.0 <= error.retry_after <= 30.0


@pytest.mark.parametrize("status", [500, 503, 529])
async def test_server_errors_are_transient(
    name: str, status: int, emulator: Emulator, connect: Any
) -> None:
    emulator.inject(str(status))
    error = await expect_failure(connect(emulator, name), emulator, TransientProviderError)
    assert not isinstance(error, ProviderTimeout)
    assert error.status == status
    assert error.retryable


async def test_hang_times_out_within_the_request_timeout(
    name: str, emulator: Emulator, connect: Any
) -> None:
    emulator.inject("hang")
    started = time.perf_counter()
    await expect_failure(connect(emulator, name), emulator, ProviderTimeout, timeout_s=1.0)
    assert 0.9 <= time.perf_counter() - started < 1.9


async def test_malformed_answer_is_returned_as_text(
    name: str, emulator: Emulator, connect: Any
) -> None:
    emulator.inject("malformed")
    response = await connect(emulator, name).complete(make_request(schema=VERDICT_SCHEMA))
    assert response.text
    with pytest.raises(ValueError):
        json.loads(response.text)


async def test_400_is_bad_request(name: str, emulator: Emulator, connect: Any) -> None:
    emulator.inject("400")
    error = await expect_failure(connect(emulator, name), emulator, BadRequest)
    assert error.status == 400
    assert not error.retryable and not error.fatal_for_run


@pytest.mark.parametrize("fault", ["401", "403"])
async def test_auth_failures_are_fatal_for_the_run(
    name: str, fault: str, emulator: Emulator, connect: Any
) -> None:
    emulator.inject(fault)
    error = await expect_failure(connect(emulator, name), emulator, AuthError)
    assert error.fatal_for_run


async def test_wrong_key_is_an_auth_error(name: str, connect: Any) -> None:
    async with run_emulator(EmulatorConfig(api_key="the-right-key")) as emu:
        await expect_failure(connect(emu, name), emu, AuthError)
        response = await connect(emu, name, api_key="the-right-key").complete(make_request())
    assert response.text


async def test_quota_exhaustion_is_not_a_rate_limit(
    name: str, emulator: Emulator, connect: Any
) -> None:
    emulator.inject("quota")
    error = await expect_failure(connect(emulator, name), emulator, QuotaExhausted)
    assert not isinstance(error, RateLimited)
    assert error.fatal_for_run


async def test_refused_connection_is_transient(name: str, connect: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    suffix = {"openai": "/v1", "openai-compatible": "/v1"}.get(name, "")
    settings = ProviderSettings(name, SECRET_KEY, base_url=f"http://127.0.0.1:{port}{suffix}")
    provider = make_provider(settings)
    try:
        with pytest.raises(TransientProviderError) as caught:
            await provider.complete(make_request())
    finally:
        await provider.aclose()
    assert SECRET_KEY not in str(caught.value)
