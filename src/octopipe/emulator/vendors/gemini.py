"""Gemini ``generateContent``, as ``google-genai`` calls it.

Served at ``POST <mount>/{v1beta|v1}/models/{model}:generateContent``; the SDK's base URL is
``<mount>`` and the SDK adds the API version. The schema may come as
``generationConfig.responseJsonSchema`` (plain JSON Schema) or ``responseSchema`` (OpenAPI
subset with upper-case type names and, from google-genai, snake_case field names such as
``min_items``, which are renamed to their JSON Schema spelling before answering). Errors use the
google.rpc shape ``{"error": {code, message, status, details}}``, as Google sends them:

- a rate limit is ``429 RESOURCE_EXHAUSTED`` with a per-minute ``QuotaFailure`` and
  ``RetryInfo.retryDelay`` in the body (Google sends no Retry-After header);
- the quota fault is the same status with a *per-day* ``QuotaFailure``;
- the ``401`` fault is what Google really answers to a bad key: ``400 INVALID_ARGUMENT``
  with an ``ErrorInfo`` whose reason is ``API_KEY_INVALID``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from octopipe.emulator.answers import Answer, EmulatorRequest
from octopipe.emulator.vendors.base import (
    InvalidRequest,
    Reply,
    Route,
    UnknownEndpoint,
    join_texts,
    require,
    text_of,
)

RPC = "type.googleapis.com/google.rpc."
_SNAKE = re.compile(r"_([a-z])")
# fault kind -> (HTTP status, google.rpc status, message)
ERRORS: dict[str, tuple[int, str, str]] = {
    "400": (400, "INVALID_ARGUMENT", "Request contains an invalid argument (emulated)."),
    "401": (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
    "403": (403, "PERMISSION_DENIED", "The caller does not have permission (emulated)."),
    "429": (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota (per minute)."),
    "quota": (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota (per day)."),
    "500": (500, "INTERNAL", "An internal error has occurred (emulated)."),
    "503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "529": (529, "UNAVAILABLE", "Overloaded (emulated)."),
}


class GeminiVendor:
    name = "gemini"
    serves_flex = False

    def routes(self) -> list[Route]:
        path = "/{version:v1beta|v1}/models/{model_action}"
        return [Route("POST", path, "gemini.generateContent")]

    def parse(
        self, route: Route, body: Mapping[str, Any], match_info: Mapping[str, str]
    ) -> EmulatorRequest:
        model, _, action = match_info.get("model_action", "").rpartition(":")
        if action != "generateContent" or not model:
            raise UnknownEndpoint(f"models/{match_info.get('model_action')}")
        contents = require(body, "contents", list)
        prompt = [
            text_of(c.get("parts"))
            for c in contents
            if isinstance(c, Mapping) and c.get("role", "user") == "user"
        ]
        config = body.get("generationConfig") or {}
        if not isinstance(config, Mapping):
            raise InvalidRequest("'generationConfig' must be an object")
        system = body.get("systemInstruction")
        schema, via = _schema_of(config)
        limit = config.get("maxOutputTokens")
        return EmulatorRequest(
            vendor=self.name,
            endpoint=route.endpoint,
            model=model.removeprefix("models/"),
            prompt=join_texts(prompt) or "",
            system=text_of(system.get("parts")) if isinstance(system, Mapping) else None,
            schema=schema,
            structured_via=via,
            max_tokens=limit if isinstance(limit, int) else None,
            body=body,
        )

    def presented_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-goog-api-key") or query.get("key")

    def success(self, request: EmulatorRequest, answer: Answer, request_id: str) -> Reply:
        usage: dict[str, int] = {
            "promptTokenCount": answer.input_tokens,
            "candidatesTokenCount": answer.output_tokens,
            "totalTokenCount": answer.input_tokens + answer.output_tokens,
        }
        if answer.cached_input_tokens:
            usage["cachedContentTokenCount"] = answer.cached_input_tokens
        body = {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": answer.text}]},
                    "finishReason": "MAX_TOKENS" if answer.truncated else "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
            "modelVersion": request.model,
            "responseId": request_id,
        }
        return Reply(200, body)

    def without_answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        candidates = [
            {k: v for k, v in candidate.items() if k != "content"}
            for candidate in body["candidates"]
        ]
        return {**body, "candidates": candidates}

    def error(self, kind: str, *, model: str, retry_after: float | None, request_id: str) -> Reply:
        status, rpc_status, message = ERRORS[kind]
        error = {"code": status, "message": message, "status": rpc_status}
        details = _details(kind, model, retry_after)
        if details:
            error["details"] = details
        return Reply(status, {"error": error})


def _schema_of(config: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str | None]:
    for key in ("responseJsonSchema", "responseSchema"):
        schema = config.get(key)
        if isinstance(schema, Mapping):
            return (camel_case_schema(schema) if key == "responseSchema" else schema), key
    return None, None


def camel_case_schema(node: Any) -> Any:
    """Rename snake_case Schema fields (``min_items``...) to the JSON Schema spelling.

    google-genai sends ``responseSchema`` with the proto field names in snake_case, which the
    real API accepts as proto3 JSON; property *names* under ``properties`` are left alone.
    """
    if isinstance(node, list):
        return [camel_case_schema(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    renamed: dict[str, Any] = {}
    for key, value in node.items():
        name = _SNAKE.sub(lambda m: m.group(1).upper(), key)
        if name == "properties" and isinstance(value, Mapping):
            renamed[name] = {prop: camel_case_schema(sub) for prop, sub in value.items()}
        else:
            renamed[name] = camel_case_schema(value)
    return renamed


def _details(kind: str, model: str, retry_after: float | None) -> list[dict[str, Any]]:
    if kind == "401":
        return [
            {
                "@type": RPC + "ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    if kind not in ("429", "quota"):
        return []
    window = "PerMinute" if kind == "429" else "PerDay"
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
        "quotaId": f"GenerateRequests{window}PerProjectPerModel",
        "quotaDimensions": {"location": "global", "model": model},
    }
    delay = 30.0 if retry_after is None else max(0.0, retry_after)
    return [
        {"@type": RPC + "QuotaFailure", "violations": [violation]},
        {"@type": RPC + "RetryInfo", "retryDelay": _duration(delay)},
    ]


def _duration(seconds: float) -> str:
    """A protobuf Duration in JSON form: decimal seconds and an ``s``, e.g. ``"1.5s"``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
