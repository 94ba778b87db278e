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
- Calls go through the SDK's lower-level ``post("/v1/messages", cast_to=httpx2.Response)``
  (the SDK's client, auth headers, timeouts and error types) and the JSON body is read here
  (``json_answer``), not built into the SDK's models, which cost most of the client's CPU per
  call. The answer keeps the account limits its headers state (``LLMResponse.stated_limits``)
  and the ``request-id`` header.
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
import httpx2

from octopipe.providers import transport
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
from octopipe.providers.json_answer import field, json_body
from octopipe.providers.ratelimit_headers import stated_limits

StructuredMode = Literal["tool", "output_config"]
_TOOL_NAME_FORBIDDEN = re.compile(r"[^a-zA-Z0-9_-]")


class AnthropicProvider:
    """``RealtimeProvider`` over ``AsyncAnthropic.post("/v1/messages")``."""

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
            http_client=transport.http_client(anthropic, settings.timeout_s),
        )
        self.endpoint = str(self._client.base_url)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(request.timeout_s + DEADLINE_GRACE_S):
                raw = await self._client.post(
                    "/v1/messages",
                    body=self.build_params(request),
                    cast_to=httpx2.Response,
                    options={"timeout": request.timeout_s},
                )
        except (anthropic.AnthropicError, TimeoutError) as exc:
            raise map_anthropic_error(
                exc, provider=self.name, secret=self._secret, timeout_s=request.timeout_s
            ) from None
        latency_s = time.perf_counter() - started
        message = json_body(self.name, raw.content)
        limits = stated_limits(raw.headers)
        request_id = raw.headers.get("request-id")

        def convert(answer: Any) -> LLMResponse:
            content = field(answer, "content")
            if content is None:  # the API promises a list, maybe empty
                raise malformed(self.name, "a message without content", answer, _usage_of(answer))
            return LLMResponse(
                text=answer_text(content, tool_name(request)),
                usage=anthropic_usage(field(answer, "usage")),
                finish_reason=field(answer, "stop_reason"),
                model=field(answer, "model") or request.model,
                request_id=request_id or field(answer, "id"),
                latency_s=latency_s,
                stated_limits=limits,
            )

        return read_answer(self.name, message, convert, _usage_of)

    async def aclose(self) -> None:
        await self._client.close()

    def build_params(self, request: LLMRequest) -> dict[str, Any]:
        """The JSON body of the ``/v1/messages`` request for ``request`` (the keyword
        arguments ``messages.create`` would take)."""
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
    return anthropic_usage(field(message, "usage"))


def tool_name(request: LLMRequest) -> str:
    """A tool name the API accepts (``[a-zA-Z0-9_-]{1,64}``) derived from ``schema_name``."""
    cleaned = _TOOL_NAME_FORBIDDEN.sub("_", request.schema_name)[:64]
    return cleaned or "response"


def answer_text(blocks: Any, wanted_tool: str) -> str:
    """The forced tool's input as JSON if present, else the text blocks joined (blocks
    decoded from the body or SDK objects)."""
    for block in blocks or []:
        if field(block, "type") == "tool_use" and field(block, "name") == wanted_tool:
            return json.dumps(field(block, "input"), ensure_ascii=False)
    return "".join(field(b, "text") for b in blocks or [] if field(b, "type") == "text")


def anthropic_usage(usage: Any) -> Usage:
    """Map ``input_tokens``/``output_tokens``/``cache_read_input_tokens``/
    ``cache_creation_input_tokens`` (see module doc), from a decoded body or an SDK object."""
    if usage is None:
        return Usage(input_tokens=0, output_tokens=0)
    cache_read = field(usage, "cache_read_input_tokens") or 0
    cache_write = field(usage, "cache_creation_input_tokens") or 0
    return Usage(
        input_tokens=(field(usage, "input_tokens") or 0) + cache_read + cache_write,
        output_tokens=field(usage, "output_tokens") or 0,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
