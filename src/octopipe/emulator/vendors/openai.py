"""OpenAI Chat Completions, as ``openai.AsyncOpenAI`` calls it.

Served at ``POST <mount>/v1/chat/completions``; the SDK's base URL is ``<mount>/v1``. Answers
carry ``usage.prompt_tokens``/``completion_tokens``/``prompt_tokens_details.cached_tokens``
and an ``x-request-id`` header. Errors use ``{"error": {message, type, param, code}}``; a 429
carries ``retry-after`` (whole seconds) and ``retry-after-ms``; the quota fault is the real
``insufficient_quota`` 429, which must *not* be retried. A request with ``service_tier:
"flex"`` is answered with ``service_tier: "flex"`` (others ``"default"``), or, for the share
``EmulatorConfig.flex_unavailable_rate``, with the 429 "resource unavailable" (``error.code``
``resource_unavailable``) flex sends when it has no capacity.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from octopipe.emulator.answers import Answer, EmulatorRequest
from octopipe.emulator.faults import retry_after_header
from octopipe.emulator.vendors.base import (
    FLEX_UNAVAILABLE,
    Reply,
    Route,
    join_texts,
    require,
    text_of,
)

# fault kind -> (HTTP status, error.type, error.code, message)
ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "400": (400, "invalid_request_error", None, "Invalid request (emulated)."),
    "401": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    "403": (
        403,
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported (emulated).",
    ),
    "429": (429, "requests", "rate_limit_exceeded", "Rate limit reached for requests (emulated)."),
    "quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "500": (500, "server_error", None, "The server had an error processing your request."),
    "503": (503, "server_error", "service_unavailable", "The engine is currently overloaded."),
    "529": (529, "server_error", "overloaded", "Overloaded (emulated)."),
    FLEX_UNAVAILABLE: (
        429,
        "resource_unavailable",
        "resource_unavailable",
        "Resource unavailable: flex processing has no capacity for this request right now "
        "(emulated); retry later or use the default service tier.",
    ),
}


class OpenAIVendor:
    name = "openai"
    serves_flex = True

    def routes(self) -> list[Route]:
        return [Route("POST", "/v1/chat/completions", "openai.chat.completions")]

    def parse(
        self, route: Route, body: Mapping[str, Any], match_info: Mapping[str, str]
    ) -> EmulatorRequest:
        messages = [m for m in require(body, "messages", list) if isinstance(m, Mapping)]
        model = require(body, "model", str)
        roles = {"system", "developer"}
        system = [text_of(m.get("content")) for m in messages if m.get("role") in roles]
        prompt = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        schema, via = _schema_of(body.get("response_format"))
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        return EmulatorRequest(
            vendor=self.name,
            endpoint=route.endpoint,
            model=model,
            prompt=join_texts(prompt) or "",
            system=join_texts(system),
            schema=schema,
            structured_via=via,
            max_tokens=limit if isinstance(limit, int) else None,
            body=body,
        )

    def presented_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        auth = headers.get("Authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    def success(self, request: EmulatorRequest, answer: Answer, request_id: str) -> Reply:
        body = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": answer.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "length" if answer.truncated else "stop",
                }
            ],
            "usage": _usage(answer),
            "service_tier": "flex" if request.body.get("service_tier") == "flex" else "default",
            "system_fingerprint": "fp_octopipe_emulator",
        }
        return Reply(200, body, {"x-request-id": request_id})

    def without_answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        choices = [
            {k: v for k, v in choice.items() if k != "message"} for choice in body["choices"]
        ]
        return {**body, "choices": choices}

    def error(self, kind: str, *, model: str, retry_after: float | None, request_id: str) -> Reply:
        status, error_type, code, message = ERRORS[kind]
        headers = {"x-request-id": request_id}
        if kind == "429" and retry_after is not None:
            headers["retry-after"] = retry_after_header(retry_after)
            headers["retry-after-ms"] = str(round(retry_after * 1000))
        body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        return Reply(status, body, headers)


def _schema_of(response_format: Any) -> tuple[Mapping[str, Any] | None, str | None]:
    if not isinstance(response_format, Mapping):
        return None, None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return (
            (schema, "response_format") if isinstance(schema, Mapping) else ({}, "response_format")
        )
    if response_format.get("type") == "json_object":
        return {"type": "object"}, "response_format"
    return None, None


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": answer.cached_input_tokens,
            "cache_write_tokens": answer.cache_write_tokens,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
