"""Anthropic Messages, as ``anthropic.AsyncAnthropic`` calls it.

Served at ``POST <mount>/v1/messages``; the SDK's base URL is ``<mount>`` (no ``/v1``). Any
``anthropic-version`` header is accepted (SDK 2.x sends a new one), and the key may come as
``x-api-key`` or, as SDK 2.12 sends it, ``Authorization: Bearer``. A forced tool
(``tool_choice={"type": "tool", "name": N}``) is answered with a ``tool_use`` block for ``N``
whose ``input`` is the answer object; ``output_config.format`` (or the older
``output_format``) with a text block holding the JSON. A malformed answer, which cannot be a
tool input, comes back as a text block. Usage reports non-cached ``input_tokens`` and
``cache_read_input_tokens`` separately, as the API does. The quota fault is the 429 whose
``error.details.error_code`` is ``enforced_spend_limit_reached``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from octopipe.emulator.answers import Answer, EmulatorRequest
from octopipe.emulator.faults import retry_after_header
from octopipe.emulator.vendors.base import Reply, Route, join_texts, require, text_of

# fault kind -> (HTTP status, error.type, message)
ERRORS: dict[str, tuple[int, str, str]] = {
    "400": (400, "invalid_request_error", "Invalid request (emulated)."),
    "401": (401, "authentication_error", "invalid x-api-key"),
    "403": (403, "permission_error", "Your API key does not have permission to use this resource."),
    "429": (429, "rate_limit_error", "Number of requests has exceeded your rate limit (emulated)."),
    "quota": (429, "rate_limit_error", "Your organization has reached its monthly spend limit."),
    "500": (500, "api_error", "Internal server error (emulated)."),
    "503": (503, "api_error", "Service unavailable (emulated)."),
    "529": (529, "overloaded_error", "Overloaded"),
}


class AnthropicVendor:
    name = "anthropic"
    serves_flex = False

    def routes(self) -> list[Route]:
        return [Route("POST", "/v1/messages", "anthropic.messages")]

    def parse(
        self, route: Route, body: Mapping[str, Any], match_info: Mapping[str, str]
    ) -> EmulatorRequest:
        messages = [m for m in require(body, "messages", list) if isinstance(m, Mapping)]
        model = require(body, "model", str)
        max_tokens = require(body, "max_tokens", int)
        prompt = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        schema, via, tool = _schema_of(body)
        return EmulatorRequest(
            vendor=self.name,
            endpoint=route.endpoint,
            model=model,
            prompt=join_texts(prompt) or "",
            system=join_texts([text_of(body.get("system"))]),
            schema=schema,
            structured_via=via,
            tool_name=tool,
            max_tokens=max_tokens,
            body=body,
        )

    def presented_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        # SDK 2.x sends api_key as "Authorization: Bearer"; older SDKs and curl use x-api-key.
        auth = headers.get("Authorization", "")
        return headers.get("x-api-key") or auth.removeprefix("Bearer ") or None

    def success(self, request: EmulatorRequest, answer: Answer, request_id: str) -> Reply:
        content, stop_reason = _content(request, answer, request_id)
        body = {
            "id": f"msg_{request_id}",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": answer.input_tokens
                - answer.cached_input_tokens
                - answer.cache_write_tokens,
                "output_tokens": answer.output_tokens,
                "cache_creation_input_tokens": answer.cache_write_tokens,
                "cache_read_input_tokens": answer.cached_input_tokens,
                "service_tier": "standard",
            },
        }
        return Reply(200, body, {"request-id": request_id})

    def without_answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k != "content"}

    def error(self, kind: str, *, model: str, retry_after: float | None, request_id: str) -> Reply:
        status, error_type, message = ERRORS[kind]
        error: dict[str, Any] = {"type": error_type, "message": message}
        if kind == "quota":
            error["details"] = {"error_code": "enforced_spend_limit_reached"}
        headers = {"request-id": request_id}
        if kind == "429" and retry_after is not None:
            headers["retry-after"] = retry_after_header(retry_after)
        body = {"type": "error", "error": error, "request_id": request_id}
        return Reply(status, body, headers)


def _schema_of(body: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str | None, str | None]:
    """(schema, native field, forced tool name) of a request."""
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "tool":
        for tool in body.get("tools") or []:
            if isinstance(tool, Mapping) and tool.get("name") == choice.get("name"):
                return tool.get("input_schema") or {}, "tool", str(tool["name"])
    for key in ("output_config", "output_format"):
        spec = body.get(key)
        fmt = spec.get("format", spec) if isinstance(spec, Mapping) else None
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            return fmt.get("schema") or {}, key, None
    return None, None, None


def _content(
    request: EmulatorRequest, answer: Answer, request_id: str
) -> tuple[list[dict[str, Any]], str]:
    """Content blocks and stop reason: a ``tool_use`` block when a tool was forced."""
    if request.tool_name and answer.data is not None:
        block = {
            "type": "tool_use",
            "id": f"toolu_{request_id}",
            "name": request.tool_name,
            "input": answer.data,
        }
        return [block], "tool_use"
    return [{"type": "text", "text": answer.text}], "max_tokens" if answer.truncated else "end_turn"
