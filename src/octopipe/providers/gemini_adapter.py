"""Realtime adapter for the Gemini Developer API through ``google-genai``.

Guarantees:

- Uses ``genai.Client(...).aio.models.generate_content``. The client is held for the
  adapter's lifetime (a garbage-collected ``genai.Client`` closes its HTTP pool under its
  sub-clients). ``vertexai=False`` is explicit, so ``GOOGLE_GENAI_USE_VERTEXAI`` in the
  environment cannot switch the adapter to another API surface.
- The API version is pinned to ``v1beta`` (google-genai 3.x defaults to ``v1``), where the
  structured-output fields are served. ``base_url=None`` lets the SDK read
  ``GOOGLE_GEMINI_BASE_URL``.
- Requests go through an ``httpx2.AsyncClient`` owned by the adapter (see ``__init__``), like
  the other two SDKs.
- Timeouts: ``HttpOptions.timeout`` is in *milliseconds*; it is set on the client and again per
  request, and an outer deadline bounds the whole call. SDK retries stay off (the SDK retries
  only when ``retry_options`` is set).
- Structured output: ``response_mime_type="application/json"`` plus, by default,
  ``response_json_schema`` (plain JSON Schema, sent as-is). ``schema_field="response_schema"``
  uses the OpenAPI-subset ``responseSchema`` instead, which older models need; the SDK
  converts the schema client-side and refuses keywords such as ``$schema`` or ``oneOf`` -- that
  refusal is raised as ``BadRequest``.
- Usage: ``promptTokenCount`` (+ tool-use prompt tokens), ``candidatesTokenCount`` +
  ``thoughtsTokenCount``, ``cachedContentTokenCount``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from octopipe.errors import BadRequest
from octopipe.providers.base import (
    DEADLINE_GRACE_S,
    LLMRequest,
    LLMResponse,
    ProviderSettings,
    Usage,
    read_answer,
)
from octopipe.providers.errors_map import map_gemini_error, redact

GEMINI_API_VERSION = "v1beta"
SchemaField = Literal["response_json_schema", "response_schema"]
_SDK_ERRORS = (
    genai_errors.APIError,
    genai_errors.UnknownApiResponseError,
    httpx2.TransportError,
    TimeoutError,
)
SDK_ERRORS = _SDK_ERRORS
"""The exceptions the SDK raises for failed calls (public alias, used by the batch adapter)."""


class GeminiProvider:
    """``RealtimeProvider`` over ``Client.aio.models.generate_content``."""

    def __init__(
        self, settings: ProviderSettings, schema_field: SchemaField = "response_json_schema"
    ) -> None:
        self.name = settings.provider
        self.schema_field: SchemaField = schema_field
        self._secret = settings.api_key
        retry = (
            types.HttpRetryOptions(attempts=1 + settings.max_retries_sdk)
            if settings.max_retries_sdk > 0
            else None
        )
        # Our own httpx2 client: without one, google-genai sends async requests through
        # aiohttp whenever aiohttp is installed, and then silently retries refused
        # connections after sleeping 1-10 s even with retries off.
        self._http = httpx2.AsyncClient(follow_redirects=True)
        options = types.HttpOptions(
            base_url=settings.base_url,
            api_version=GEMINI_API_VERSION,
            timeout=_millis(settings.timeout_s),
            retry_options=retry,
            httpx_async_client=self._http,
        )
        self._client = genai.Client(api_key=settings.api_key, vertexai=False, http_options=options)
        self.endpoint = settings.base_url or "https://generativelanguage.googleapis.com"

    async def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(request.timeout_s + DEADLINE_GRACE_S):
                response = await self._client.aio.models.generate_content(
                    model=request.model, contents=request.prompt, config=self.build_config(request)
                )
        except _SDK_ERRORS as exc:
            raise map_gemini_error(
                exc, provider=self.name, secret=self._secret, timeout_s=request.timeout_s
            ) from None
        except ValueError as exc:  # the SDK refused the request before sending it
            message = redact(str(exc), self._secret)[:300]
            raise BadRequest(f"request refused by the SDK: {message}", provider=self.name) from None
        latency_s = time.perf_counter() - started
        return read_answer(
            self.name,
            response,
            lambda answer: self._to_response(answer, request, latency_s),
            lambda answer: gemini_usage(answer.usage_metadata),
        )

    @property
    def client(self) -> genai.Client:
        """The underlying ``genai.Client`` (shared with the batch adapter)."""
        return self._client

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._http.aclose()

    def build_config(self, request: LLMRequest) -> types.GenerateContentConfig:
        """The ``GenerateContentConfig`` for ``request`` (timeout included)."""
        fields: dict[str, Any] = {
            "max_output_tokens": request.max_tokens,
            "http_options": types.HttpOptions(timeout=_millis(request.timeout_s)),
        }
        if request.system:
            fields["system_instruction"] = request.system
        if request.temperature is not None:
            fields["temperature"] = request.temperature
        if request.wants_structured_output:
            fields["response_mime_type"] = "application/json"
            fields[self.schema_field] = request.schema
        return types.GenerateContentConfig(**fields)

    def _to_response(self, response: Any, request: LLMRequest, latency_s: float) -> LLMResponse:
        return LLMResponse(
            text=gemini_text(response),
            usage=gemini_usage(response.usage_metadata),
            finish_reason=gemini_finish_reason(response),
            model=response.model_version or request.model,
            request_id=response.response_id,
            latency_s=latency_s,
        )


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def gemini_text(response: Any) -> str:
    """Text parts of the first candidate, thoughts excluded ("" when there is none)."""
    if not response.candidates:
        return ""
    content = response.candidates[0].content
    parts = content.parts if content is not None and content.parts else []
    return "".join(p.text for p in parts if p.text and not p.thought)


def gemini_finish_reason(response: Any) -> str | None:
    """The candidate's ``finishReason``, or the prompt's ``blockReason`` when it was blocked."""
    if response.candidates:
        reason = response.candidates[0].finish_reason
    else:
        feedback = response.prompt_feedback
        reason = feedback.block_reason if feedback is not None else None
    if reason is None:
        return None
    return str(getattr(reason, "value", reason))


def gemini_usage(meta: Any) -> Usage:
    """Map ``usageMetadata`` token counts to ``Usage`` (see module doc)."""
    if meta is None:
        return Usage(input_tokens=0, output_tokens=0)
    return Usage(
        input_tokens=(meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0),
        output_tokens=(meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0),
        cached_input_tokens=meta.cached_content_token_count or 0,
    )
