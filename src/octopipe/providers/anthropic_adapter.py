"""Realtime adapter for the Anthropic Messages API.

Guarantees:

- Uses the official ``anthropic.AsyncAnthropic`` client with an explicit ``api_key`` (so the
  SDK's profile and workload-identity discovery never kicks in), SDK retries off, a timeout
  on every request and an outer deadline over the whole call.
- ``max_tokens`` is always sent (the API requires it).
- Structured output, two modes:

  * ``"tool"`` (default; every Claude model supports it): one tool whose ``input_schema`` is
    the step's schema, forced with ``tool_choice={"type": "tool", "name": ...}``. The answer
    text is ``json.dumps(tool_use.input)``.
  * ``"output_config"``: the native ``output_config={"format": {"type": "json_schema",
    "schema": ...}}``; the answer is the text block. Only newer models accept it.

  If the model answers with text instead of the forced tool, that text is returned as is:
  the validator decides whether it is usable.
- Calls go through the SDK's raw-response path (``with_raw_response``), so the answer keeps
  the account limits its headers state (``LLMResponse.stated_limits``).
- ``base_url=None`` lets the SDK read ``ANTHROPIC_BASE_URL`` (no ``/v1`` suffix).
- ``Usage.input_tokens`` adds the cache read/creation counts back in (Anthropic reports
  them separately), so it means "all prompt tokens" as for the other vendors.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any, Literal

import anthropic

from octopipe.providers.base import (
    DEADLINE_GRACE_S,
    LLMRequest,
    LLMResponse,
    ProviderSettings,
    Usage,
    malformed,
    read_answer,
)
from octopipe.providers.errors_map import map_anthropic_error
from octopipe.providers.ratelimit_headers import stated_limits

StructuredMode = Literal["tool", "output_config"]
_TOOL_NAME_FORBIDDEN = re.compile(r"[^a-zA-Z0-9_-]")


class AnthropicProvider:
    """``RealtimeProvider`` over ``AsyncAnthropic.messages.create``."""

    def __init__(
        self, settings: ProviderSettings, structured_mode: StructuredMode = "tool"
    ) -> None:
        self.name = settings.provider
        self.structured_mode: StructuredMode = structured_mode
        self._secret = settings.api_key
        self._client = anthropic.AsyncAnthropic(
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
                raw = await self._client.messages.with_raw_response.create(
                    **self.build_params(request), timeout=request.timeout_s
                )
                message = await raw.parse()
        except (anthropic.AnthropicError, TimeoutError) as exc:
            raise map_anthropic_error(
                exc, provider=self.name, secret=self._secret, timeout_s=request.timeout_s
            ) from None
        latency_s = time.perf_counter() - started
        limits = stated_limits(raw.headers)

        def convert(answer: Any) -> LLMResponse:
            if getattr(answer, "content", None) is None:  # the API promises a list, maybe empty
                raise malformed(self.name, "a message without content", answer, _usage_of(answer))
            return LLMResponse(
                text=answer_text(answer.content, tool_name(request)),
                usage=anthropic_usage(answer.usage),
                finish_reason=answer.stop_reason,
                model=answer.model or request.model,
                request_id=getattr(answer, "_request_id", None) or answer.id,
                latency_s=latency_s,
                stated_limits=limits,
            )

        return read_answer(self.name, message, convert, _usage_of)

    async def aclose(self) -> None:
        await self._client.close()

    def build_params(self, request: LLMRequest) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for ``request``."""
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": "user", "content": request.prompt}],
        }
        if request.system:
            params["system"] = request.system
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.wants_structured_output:
            params.update(self._structured_params(request))
        return params

    def _structured_params(self, request: LLMRequest) -> dict[str, Any]:
        if self.structured_mode == "output_config":
            return {"output_config": {"format": {"type": "json_schema", "schema": request.schema}}}
        name = tool_name(request)
        tool = {
            "name": name,
            "description": f"Record the answer for step {request.step!r} in this exact shape.",
            "input_schema": request.schema,
        }
        return {"tools": [tool], "tool_choice": {"type": "tool", "name": name}}


def _usage_of(message: Any) -> Usage:
    return anthropic_usage(getattr(message, "usage", None))


def tool_name(request: LLMRequest) -> str:
    """A tool name the API accepts (``[a-zA-Z0-9_-]{1,64}``) derived from ``schema_name``."""
    cleaned = _TOOL_NAME_FORBIDDEN.sub("_", request.schema_name)[:64]
    return cleaned or "response"


def answer_text(blocks: Any, wanted_tool: str) -> str:
    """The forced tool's input as JSON if present, else the text blocks joined."""
    for block in blocks or []:
        if getattr(block, "type", None) == "tool_use" and block.name == wanted_tool:
            return json.dumps(block.input, ensure_ascii=False)
    return "".join(block.text for block in blocks or [] if getattr(block, "type", None) == "text")


def anthropic_usage(usage: Any) -> Usage:
    """Map ``input_tokens``/``output_tokens``/``cache_read_input_tokens``/
    ``cache_creation_input_tokens`` (see module doc)."""
    if usage is None:
        return Usage(input_tokens=0, output_tokens=0)
    cache_read = getattr(usage, "cache_read_input_tokens", None) or 0
    cache_write = getattr(usage, "cache_creation_input_tokens", None) or 0
    return Usage(
        input_tokens=(usage.input_tokens or 0) + cache_read + cache_write,
        output_tokens=usage.output_tokens or 0,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
