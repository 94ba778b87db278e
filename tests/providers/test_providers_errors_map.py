"""Error classification tables, driven by SDK exceptions built from synthetic responses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google.genai import errors as genai_errors

from octopipe.errors import (
    AuthError,
    BadRequest,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
)
from octopipe.providers.errors_map import (
    map_anthropic_error,
    map_gemini_error,
    map_openai_error,
    parse_retry_after,
)

KEY = "sk-live-abcdefghijklmnop"
RPC = "type.googleapis.com/google.rpc."


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/x")
    if isinstance(body, str):
        return httpx2.Response(status, headers=headers, text=body, request=request)
    return httpx2.Response(status, headers=headers, json=body or {}, request=request)


def openai_error(status: int, error: Any, headers: dict[str, str] | None = None) -> Any:
    client = openai.OpenAI(api_key=KEY, base_url="http://127.0.0.1/v1")
    raw = response(status, {"error": error} if isinstance(error, dict) else error, headers)
    return client._make_status_error_from_response(raw)


def anthropic_error(
    status: int, error: dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    client = anthropic.Anthropic(api_key=KEY, base_url="http://127.0.0.1")
    raw = response(status, {"type": "error", "error": error}, headers)
    return client._make_status_error_from_response(raw)


def gemini_error(status: int, rpc_status: str, details: list[dict[str, Any]] | None = None) -> Any:
    body = {
        "error": {"code": status, "message": "m", "status": rpc_status, "details": details or []}
    }
    cls = genai_errors.ClientError if status < 500 else genai_errors.ServerError
    return cls(status, body, response(status, body))


def classify(mapper: Any, exc: BaseException) -> ProviderError:
    return mapper(exc, provider="p", secret=KEY, timeout_s=5.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2026 07:28:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 21 Oct 2026 07:27:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-4"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(headers, now=now) == expected


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (429, {"type": "requests", "code": "rate_limit_exceeded", "message": "slow"}, RateLimited),
        (429, {"type": "insufficient_quota", "code": "insufficient_quota"}, QuotaExhausted),
        (
            400,
            {"type": "invalid_request_error", "code": "billing_hard_limit_reached"},
            QuotaExhausted,
        ),
        (400, {"type": "invalid_request_error", "code": None}, BadRequest),
        (401, {"type": "invalid_request_error", "code": "invalid_api_key"}, AuthError),
        (403, {"type": "invalid_request_error"}, AuthError),
        (404, {"code": "model_not_found"}, BadRequest),
        (413, {"type": "invalid_request_error"}, BadRequest),
        (422, {"type": "invalid_request_error"}, BadRequest),
        (408, {"type": "timeout"}, TransientProviderError),
        (409, {"type": "conflict"}, TransientProviderError),
        (500, {"type": "server_error"}, TransientProviderError),
        (502, "<html>bad gateway</html>", TransientProviderError),
        (504, {"type": "server_error"}, TransientProviderError),
    ],
)
def test_openai_classification(status: int, error: Any, expected: type[ProviderError]) -> None:
    mapped = classify(map_openai_error, openai_error(status, error))
    assert type(mapped) is expected
    assert mapped.status == status


def test_openai_rate_limit_carries_retry_after_and_request_id() -> None:
    exc = openai_error(
        429, {"code": "rate_limit_exceeded"}, {"retry-after": "7", "x-request-id": "req_42"}
    )
    mapped = classify(map_openai_error, exc)
    assert isinstance(mapped, RateLimited)
    assert mapped.retry_after == 7.0
    assert "req_42" in str(mapped)


def test_openai_message_never_shows_the_key() -> None:
    exc = openai_error(401, {"code": "invalid_api_key", "message": f"Incorrect API key {KEY}"})
    assert KEY in str(exc)  # the SDK's own message does carry it
    mapped = classify(map_openai_error, exc)
    assert KEY not in str(mapped)
    assert "[redacted]" in str(mapped)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (402, {"type": "billing_error", "message": "pay"}, QuotaExhausted),
        (400, {"type": "billing_error", "message": "credit balance"}, QuotaExhausted),
        (
            429,
            {"type": "rate_limit_error", "details": {"error_code": "contract_spend_limit_reached"}},
            QuotaExhausted,
        ),
        (
            429,
            {"type": "rate_limit_error", "details": {"error_code": "ramp_limit_exceeded"}},
            RateLimited,
        ),
        (429, {"type": "rate_limit_error"}, RateLimited),
        (413, {"type": "request_too_large"}, BadRequest),
        (401, {"type": "authentication_error"}, AuthError),
        (403, {"type": "permission_error"}, AuthError),
        (529, {"type": "overloaded_error"}, TransientProviderError),
        (504, {"type": "timeout_error"}, TransientProviderError),
    ],
)
def test_anthropic_classification(
    status: int, error: dict[str, Any], expected: type[ProviderError]
) -> None:
    assert type(classify(map_anthropic_error, anthropic_error(status, error))) is expected


def test_anthropic_retry_after_in_seconds() -> None:
    exc = anthropic_error(429, {"type": "rate_limit_error"}, {"retry-after": "12"})
    mapped = classify(map_anthropic_error, exc)
    assert isinstance(mapped, RateLimited)
    assert mapped.retry_after == 12.0


def quota_failure(quota_id: str) -> dict[str, Any]:
    return {"@type": RPC + "QuotaFailure", "violations": [{"quotaId": quota_id}]}


PER_MINUTE = quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")
PER_DAY = quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier")
RETRY_7S = {"@type": RPC + "RetryInfo", "retryDelay": "7s"}
BILLING_DISABLED = {"@type": RPC + "ErrorInfo", "reason": "BILLING_DISABLED"}
KEY_INVALID = {"@type": RPC + "ErrorInfo", "reason": "API_KEY_INVALID"}


@pytest.mark.parametrize(
    ("status", "rpc_status", "details", "expected"),
    [
        (429, "RESOURCE_EXHAUSTED", [PER_MINUTE, RETRY_7S], RateLimited),
        (429, "RESOURCE_EXHAUSTED", [], RateLimited),
        (429, "RESOURCE_EXHAUSTED", [PER_DAY, RETRY_7S], QuotaExhausted),
        (403, "PERMISSION_DENIED", [BILLING_DISABLED], QuotaExhausted),
        (400, "INVALID_ARGUMENT", [KEY_INVALID], AuthError),
        (400, "INVALID_ARGUMENT", [], BadRequest),
        (400, "FAILED_PRECONDITION", [], BadRequest),
        (401, "UNAUTHENTICATED", [], AuthError),
        (404, "NOT_FOUND", [], BadRequest),
        (500, "INTERNAL", [], TransientProviderError),
        (503, "UNAVAILABLE", [], TransientProviderError),
        (504, "DEADLINE_EXCEEDED", [], TransientProviderError),
    ],
)
def test_gemini_classification(
    status: int, rpc_status: str, details: list[dict[str, Any]], expected: type[ProviderError]
) -> None:
    assert type(classify(map_gemini_error, gemini_error(status, rpc_status, details))) is expected


def test_gemini_retry_delay_comes_from_the_body() -> None:
    exc = gemini_error(429, "RESOURCE_EXHAUSTED", [PER_MINUTE, {**RETRY_7S, "retryDelay": "2.5s"}])
    mapped = classify(map_gemini_error, exc)
    assert isinstance(mapped, RateLimited)
    assert mapped.retry_after == 2.5


def test_long_messages_are_truncated() -> None:
    exc = openai_error(400, {"message": "x" * 5000})
    assert len(str(classify(map_openai_error, exc))) < 400


def test_unknown_sdk_errors_stay_provider_errors() -> None:
    mapped = classify(map_openai_error, openai.OpenAIError("odd"))
    assert type(mapped) is ProviderError
