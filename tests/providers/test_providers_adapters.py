"""Vendor-specific adapter behaviour: wire fields, structured-output modes, base URLs."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from octopipe.emulator import Emulator
from octopipe.errors import BadRequest, MissingApiKey, UsageError
from octopipe.providers.anthropic_adapter import AnthropicProvider
from octopipe.providers.base import ProviderSettings, RealtimeProvider
from octopipe.providers.catalog import DUMMY_API_KEY, make_provider, resolve_api_key
from octopipe.providers.gemini_adapter import GeminiProvider
from support.providers import SECRET_KEY, VERDICT_SCHEMA, make_request


async def test_openai_sends_max_completion_tokens(emulator: Emulator, connect: Any) -> None:
    await connect(emulator, "openai").complete(make_request(max_tokens=77, temperature=0.2))
    body = emulator.requests[-1].body
    assert body["max_completion_tokens"] == 77
    assert "max_tokens" not in body
    assert body["temperature"] == 0.2
    assert emulator.requests[-1].path == "/openai/v1/chat/completions"


async def test_openai_compatible_sends_max_tokens(emulator: Emulator, connect: Any) -> None:
    await connect(emulator, "openai-compatible").complete(make_request(max_tokens=77))
    body = emulator.requests[-1].body
    assert body["max_tokens"] == 77
    assert "max_completion_tokens" not in body
    assert "temperature" not in body


async def test_openai_schema_is_strict_json_schema(emulator: Emulator, connect: Any) -> None:
    request = make_request(schema=VERDICT_SCHEMA, schema_name="verdict")
    await connect(emulator, "openai").complete(request)
    assert emulator.requests[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA, "strict": True},
    }


async def test_anthropic_forces_the_schema_tool(emulator: Emulator, connect: Any) -> None:
    request = make_request(schema=VERDICT_SCHEMA, schema_name="story verdict")
    await connect(emulator, "anthropic").complete(request)
    body = emulator.requests[-1].body
    assert body["tool_choice"] == {"type": "tool", "name": "story_verdict"}
    assert body["tools"][0]["input_schema"] == VERDICT_SCHEMA
    assert emulator.requests[-1].path == "/anthropic/v1/messages"


async def test_anthropic_output_config_mode(emulator: Emulator) -> None:
    settings = ProviderSettings("anthropic", SECRET_KEY, emulator.base_url_for("anthropic"))
    provider = AnthropicProvider(settings, structured_mode="output_config")
    try:
        response = await provider.complete(make_request(schema=VERDICT_SCHEMA))
    finally:
        await provider.aclose()
    received = emulator.requests[-1]
    assert received.structured_via == "output_config"
    assert "tools" not in received.body
    jsonschema.validate(json.loads(response.text), VERDICT_SCHEMA)


async def test_gemini_uses_v1beta_and_json_schema(emulator: Emulator, connect: Any) -> None:
    await connect(emulator, "gemini").complete(make_request(schema=VERDICT_SCHEMA, system="S."))
    received = emulator.requests[-1]
    assert received.path == "/gemini/v1beta/models/emu-model:generateContent"
    config = received.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == VERDICT_SCHEMA
    assert received.system == "S."


async def test_gemini_response_schema_mode(emulator: Emulator) -> None:
    provider = _gemini(emulator, schema_field="response_schema")
    try:
        response = await provider.complete(make_request(schema=VERDICT_SCHEMA))
    finally:
        await provider.aclose()
    received = emulator.requests[-1]
    assert received.structured_via == "responseSchema"
    assert received.schema is not None and received.schema["type"] == "OBJECT"
    jsonschema.validate(json.loads(response.text), VERDICT_SCHEMA)


async def test_gemini_response_schema_refusal_is_bad_request(emulator: Emulator) -> None:
    provider = _gemini(emulator, schema_field="response_schema")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **VERDICT_SCHEMA}
    try:
        with pytest.raises(BadRequest):
            await provider.complete(make_request(schema=schema))
    finally:
        await provider.aclose()
    assert emulator.stats()["requests_total"] == 0


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("openai", "OPENAI_BASE_URL"),
        ("anthropic", "ANTHROPIC_BASE_URL"),
        ("gemini", "GOOGLE_GEMINI_BASE_URL"),
    ],
)
async def test_standard_base_url_variables_still_work(
    name: str, variable: str, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, emulator.base_url_for(name))
    provider = make_provider(ProviderSettings(name, SECRET_KEY))
    try:
        await provider.complete(make_request())
    finally:
        await provider.aclose()
    assert emulator.stats()["requests_total"] == 1


def test_settings_repr_hides_the_key() -> None:
    assert SECRET_KEY not in repr(ProviderSettings("openai", SECRET_KEY))


def test_factory_builds_every_named_provider() -> None:
    for name in ("openai", "anthropic", "gemini"):
        assert isinstance(make_provider(ProviderSettings(name, "k")), RealtimeProvider)
    compatible = make_provider(ProviderSettings("openai-compatible", "k", "http://127.0.0.1:1/v1"))
    assert compatible.name == "openai-compatible"


def test_factory_refuses_an_unknown_provider() -> None:
    with pytest.raises(UsageError, match="known providers"):
        make_provider(ProviderSettings("mistral", "k"))


def test_openai_compatible_needs_a_base_url() -> None:
    with pytest.raises(UsageError, match="base_url"):
        make_provider(ProviderSettings("openai-compatible", "k"), env={})
    assert make_provider(
        ProviderSettings("openai-compatible", "k"), env={"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}
    )


@pytest.mark.parametrize(
    ("provider", "env", "expected"),
    [
        ("openai", {"OPENAI_API_KEY": "o-key"}, "o-key"),
        ("anthropic", {"ANTHROPIC_API_KEY": "a-key"}, "a-key"),
        ("gemini", {"GEMINI_API_KEY": "g-key"}, "g-key"),
        ("gemini", {"GOOGLE_API_KEY": "google", "GEMINI_API_KEY": "g-key"}, "google"),
        ("openai-compatible", {"OPENAI_COMPATIBLE_API_KEY": "c-key"}, "c-key"),
        ("openai-compatible", {"OPENAI_API_KEY": "real-openai-key"}, DUMMY_API_KEY),
    ],
)
def test_resolve_api_key(provider: str, env: dict[str, str], expected: str) -> None:
    assert resolve_api_key(provider, env) == expected


@pytest.mark.parametrize(
    ("provider", "variable"),
    [
        ("openai", "OPENAI_API_KEY"),
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("gemini", "GOOGLE_API_KEY or GEMINI_API_KEY"),
    ],
)
def test_missing_key_names_the_variable(provider: str, variable: str) -> None:
    with pytest.raises(MissingApiKey) as caught:
        resolve_api_key(provider, {"OPENAI_API_KEY": "  "} if provider == "openai" else {})
    assert variable in str(caught.value)
    assert caught.value.fatal_for_run


def _gemini(emulator: Emulator, **options: Any) -> GeminiProvider:
    settings = ProviderSettings("gemini", SECRET_KEY, emulator.base_url_for("gemini"))
    return GeminiProvider(settings, **options)
