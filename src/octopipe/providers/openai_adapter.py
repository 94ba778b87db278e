"""Realtime adapter for OpenAI Chat Completions and OpenAI-compatible servers.

Guarantees:

- Uses the official ``openai.AsyncOpenAI`` client with SDK retries off (``max_retries`` from
  the settings, 0 by default) and a timeout on every request, plus an outer deadline of
  ``timeout_s + DEADLINE_GRACE_S`` over the whole call.
- ``service_tier`` is sent when the request asks for one (``"flex"``: ``run --flex``), and
  the tier the answer names is kept (``LLMResponse.service_tier``).
- Structured output is requested natively: ``response_format={"type": "json_schema",
  "json_schema": {"name", "schema", "strict": True}}``.
- It sends ``max_completion_tokens`` (required by OpenAI's reasoning models), or with
  ``legacy_max_tokens`` (OpenAI-compatible servers) the older ``max_tokens``, which vLLM,
  Ollama and llama.cpp understand.
- ``base_url=None`` lets the SDK read ``OPENAI_BASE_URL``. Note the OpenAI base URL *includes*
  ``/v1``.
- Calls go through the SDK's raw-response path (``with_raw_response``), so the answer keeps
  the account limits its headers state (``LLMResponse.stated_limits``).
- Every SDK exception is mapped by ``errors_map.map_openai_error``; the API key is redacted
  from messages.
- An answer without choices, a choice without ``message`` or any other surprise in its shape
  raises ``MalformedResponse`` carrying the body and the usage (never a raw ``AttributeError``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai

from octopipe.providers.base import (
    DEADLINE_GRACE_S,
    LLMRequest,
    LLMResponse,
    ProviderSettings,
    Usage,
    malformed,
    read_answer,
)
from octopipe.providers.errors_map import map_openai_error
from octopipe.providers.ratelimit_headers import StatedLimits, stated_limits


class OpenAIProvider:
    """``RealtimeProvider`` over ``AsyncOpenAI.chat.completions.create``."""

    def __init__(self, settings: ProviderSettings, *, legacy_max_tokens: bool = False) -> None:
        self.name = settings.provider
        self._secret = settings.api_key
        self._token_param = "max_tokens" if legacy_max_tokens else "max_completion_tokens"
        self._client = openai.AsyncOpenAI(
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout=settings.timeout_s,
            max_retries=settings.max_retries_sdk,
        )
        self.endpoint = str(self._client.base_url)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(request.timeout_s + DEADLINE_GRACE_S):
                raw = await self._client.chat.completions.with_raw_response.create(
                    **self.build_params(request), timeout=request.timeout_s
                )
                completion = raw.parse()
        except (openai.OpenAIError, TimeoutError) as exc:
            raise map_openai_error(
                exc, provider=self.name, secret=self._secret, timeout_s=request.timeout_s
            ) from None
        latency_s = time.perf_counter() - started
        return self._to_response(completion, request, latency_s, stated_limits(raw.headers))

    async def aclose(self) -> None:
        await self._client.close()

    def build_params(self, request: LLMRequest) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for ``request``."""
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        params: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            self._token_param: request.max_tokens,
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.service_tier is not None:
            params["service_tier"] = request.service_tier
        if request.wants_structured_output:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name,
                    "schema": request.schema,
                    "strict": True,
                },
            }
        return params

    def _to_response(
        self,
        completion: Any,
        request: LLMRequest,
        latency_s: float,
        limits: StatedLimits | None = None,
    ) -> LLMResponse:
        def convert(answer: Any) -> LLMResponse:
            choices = answer.choices
            if not choices:
                raise malformed(self.name, "no choices", answer, _usage_of(answer))
            choice = choices[0]
            message = getattr(choice, "message", None)
            if message is None:
                raise malformed(self.name, "a choice without message", answer, _usage_of(answer))
            text = message.content
            if text is not None and not isinstance(text, str):
                raise malformed(self.name, "message content is not text", answer, _usage_of(answer))
            return LLMResponse(
                text=text or "",
                usage=openai_usage(answer.usage),
                finish_reason=choice.finish_reason,
                model=answer.model or request.model,
                request_id=getattr(answer, "_request_id", None) or answer.id,
                latency_s=latency_s,
                service_tier=_tier_name(getattr(answer, "service_tier", None)),
                stated_limits=limits,
            )

        return read_answer(self.name, completion, convert, _usage_of)


def _tier_name(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _usage_of(completion: Any) -> Usage:
    return openai_usage(getattr(completion, "usage", None))


def openai_usage(usage: Any) -> Usage:
    """Map ``prompt_tokens``/``completion_tokens``/``prompt_tokens_details.cached_tokens``
    (and ``prompt_tokens_details.cache_write_tokens`` when present)."""
    if usage is None:
        return Usage(input_tokens=0, output_tokens=0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    writes = getattr(details, "cache_write_tokens", None) or 0
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        cached_input_tokens=cached,
        cache_write_tokens=writes,
    )
