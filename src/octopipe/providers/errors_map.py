"""Translate SDK exceptions into ``octopipe.errors`` by exception type and HTTP status.

Guarantees:

- Classification reads exception classes, HTTP status codes, headers and *structured* body
  fields (error codes, google.rpc detail messages). It never searches free-text messages.
- HTTP status -> error: 429 ``RateLimited`` (OpenAI's flex "resource unavailable" 429, told
  by its ``error.code``, ``FlexUnavailable``); 401/403 ``AuthError``; 402 ``QuotaExhausted``;
  408, 409, 499 and every 5xx (including Anthropic's 529) ``TransientProviderError``;
  other 4xx (400, 404, 413, 422, ...) ``BadRequest``. Timeouts become ``ProviderTimeout``,
  connection failures ``TransientProviderError``.
- Quota/billing exhaustion (``QuotaExhausted``, which pauses the run) is decided per vendor:

  * OpenAI: body ``error.code`` or ``error.type`` is ``insufficient_quota`` (sent with 429),
    or ``billing_hard_limit_reached``.
  * Anthropic: HTTP 402, ``error.type == "billing_error"``, or ``error.details.error_code`` one
    of the spend-limit codes (``enforced_spend_limit_reached`` ... sent with 429).
  * Gemini: a ``google.rpc.ErrorInfo`` detail with a billing reason, or a
    ``google.rpc.QuotaFailure`` violation on a *per-day* quota. Gemini attaches QuotaFailure
    to ordinary per-minute 429s too, so QuotaFailure alone means "rate limited"; the window
    is read from the structured ``quotaId`` identifier (``...PerDay...``), which names the
    quota, not from the human-readable message.
- A 429 ``RateLimited`` carries the account limits its headers state (``stated_limits``,
  OpenAI and Anthropic; ``None`` when the headers state none).
- ``retry_after`` comes from ``retry-after-ms``, then ``retry-after`` (seconds or HTTP date),
  then, for Gemini, ``google.rpc.RetryInfo.retryDelay`` in the body.
- Messages come from the vendor's structured ``message`` field, truncated, with the API key
  redacted wherever it might appear. Adapters raise the mapped error ``from None``: the SDK
  exception's own text (Anthropic's holds the whole response body) and its request (whose
  headers hold the key) are not chained into tracebacks that may end up in logs.

SDKs are imported inside the mapping functions so that importing this module stays cheap.
"""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from octopipe.errors import (
    AuthError,
    BadRequest,
    FlexUnavailable,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
)
from octopipe.providers.ratelimit_headers import StatedLimits, stated_limits

TRANSIENT_STATUSES = frozenset({408, 409, 425, 499})
AUTH_STATUSES = frozenset({401, 403})
OPENAI_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
OPENAI_FLEX_UNAVAILABLE_CODES = frozenset({"resource_unavailable"})
"""``error.code``/``error.type`` of the 429 a flex-tier request gets when flex has no
capacity ("resource unavailable"; `FlexUnavailable`), as opposed to ``rate_limit_exceeded``."""
ANTHROPIC_QUOTA_CODES = frozenset(
    {
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
        "linked_organization_billing_unavailable",
    }
)
GEMINI_BILLING_REASONS = frozenset({"BILLING_DISABLED", "BILLING_NOT_ACTIVE"})
GEMINI_AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
MAX_MESSAGE_CHARS = 300
_PER_DAY = re.compile(r"PerDay(?=Per|-|$)")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")


@dataclass(frozen=True)
class ErrorFacts:
    """What a failed HTTP exchange told us, independent of the vendor."""

    status: int | None
    message: str
    retry_after: float | None = None
    quota: bool = False
    auth: bool = False
    request_id: str | None = None
    flex_unavailable: bool = False
    stated_limits: StatedLimits | None = None


def error_from_facts(facts: ErrorFacts, *, provider: str, secret: str | None) -> ProviderError:
    """Choose the error class for ``facts`` and build it with a redacted message."""
    message = redact(facts.message, secret)[:MAX_MESSAGE_CHARS] or "request failed"
    if facts.request_id:
        message += f" [request {facts.request_id}]"
    status = facts.status
    if facts.quota:
        return QuotaExhausted(message, provider=provider, status=status)
    if facts.auth:
        return AuthError(message, provider=provider, status=status)
    if status == 429 and facts.flex_unavailable:
        return FlexUnavailable(message, provider=provider, retry_after=facts.retry_after)
    if status == 429:
        return RateLimited(
            message,
            provider=provider,
            retry_after=facts.retry_after,
            stated_limits=facts.stated_limits,
        )
    return _class_for_status(status)(message, provider=provider, status=status)


def _class_for_status(status: int | None) -> type[ProviderError]:
    if status is None or status >= 500 or status in TRANSIENT_STATUSES or status < 400:
        return TransientProviderError
    if status in AUTH_STATUSES:
        return AuthError
    if status == 402:
        return QuotaExhausted
    return BadRequest


def parse_retry_after(
    headers: Mapping[str, str] | None, now: datetime | None = None
) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` / ``retry-after``; None when absent."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = _non_negative_float(lowered.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _non_negative_float(raw)
    return seconds if seconds is not None else _seconds_until(raw, now)


def _seconds_until(http_date: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _non_negative_float(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def redact(text: str, secret: str | None) -> str:
    """Replace every occurrence of ``secret`` (an API key) in ``text``."""
    if secret and len(secret) >= 4:
        return text.replace(secret, "[redacted]")
    return text


def unexpected_error(provider: str, exc: BaseException, secret: str | None) -> ProviderError:
    """An SDK error outside the known classes: not retried, not fatal; text kept for debugging."""
    detail = redact(str(exc), secret)[:MAX_MESSAGE_CHARS]
    return ProviderError(f"SDK error {type(exc).__name__}: {detail}", provider=provider)


def timeout_error(provider: str, timeout_s: float) -> ProviderTimeout:
    return ProviderTimeout(f"no answer within {timeout_s:g} s", provider=provider)


CONNECTION_CAUSES: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (ConnectionAbortedError, "connection aborted"),
    (socket.gaierror, "host not found"),
)


def connection_error(provider: str, exc: BaseException) -> ProviderUnreachable:
    """``connection refused`` / ``reset`` / ``host not found`` when the exception chain holds
    that OS error (read by type), else ``connection failed (<SDK error>)``."""
    cause = exc.__cause__ or exc.__context__ or exc
    link: BaseException | None = exc
    for _ in range(8):  # the SDKs wrap the OS error three or four levels deep
        if link is None:
            break
        for kind, label in CONNECTION_CAUSES:
            if isinstance(link, kind):
                return ProviderUnreachable(label, provider=provider)
        link = link.__cause__ or link.__context__
    return ProviderUnreachable(f"connection failed ({type(cause).__name__})", provider=provider)


# --- OpenAI (and OpenAI-compatible servers) ----------------------------------------------------


def map_openai_error(
    exc: BaseException, *, provider: str, secret: str | None, timeout_s: float
) -> ProviderError:
    import openai

    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return timeout_error(provider, timeout_s)
    if isinstance(exc, openai.APIConnectionError):
        return connection_error(provider, exc)
    if isinstance(exc, openai.APIStatusError):
        return error_from_facts(_openai_facts(exc), provider=provider, secret=secret)
    if isinstance(exc, openai.APIResponseValidationError):
        return TransientProviderError(
            "the response did not match the API's schema",
            provider=provider,
            status=exc.status_code,
        )
    return unexpected_error(provider, exc, secret)


def _openai_facts(exc: Any) -> ErrorFacts:
    body = exc.body if isinstance(exc.body, dict) else {}
    codes = {exc.code, exc.type}
    message = str(body.get("message") or "")
    if not message and isinstance(exc.body, str):
        message = exc.body
    label = exc.code or exc.type
    return ErrorFacts(
        status=exc.status_code,
        message=f"{label}: {message}" if label else message,
        retry_after=parse_retry_after(exc.response.headers),
        quota=bool(codes & OPENAI_QUOTA_CODES),
        request_id=exc.request_id,
        flex_unavailable=bool(codes & OPENAI_FLEX_UNAVAILABLE_CODES),
        stated_limits=stated_limits(exc.response.headers),
    )


# --- Anthropic ---------------------------------------------------------------------------------


def map_anthropic_error(
    exc: BaseException, *, provider: str, secret: str | None, timeout_s: float
) -> ProviderError:
    import anthropic

    if isinstance(exc, anthropic.APITimeoutError | TimeoutError):
        return timeout_error(provider, timeout_s)
    if isinstance(exc, anthropic.APIConnectionError):
        return connection_error(provider, exc)
    if isinstance(exc, anthropic.APIStatusError):
        return error_from_facts(_anthropic_facts(exc), provider=provider, secret=secret)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return TransientProviderError(
            "the response did not match the API's schema",
            provider=provider,
            status=exc.status_code,
        )
    return unexpected_error(provider, exc, secret)


def _anthropic_facts(exc: Any) -> ErrorFacts:
    label = exc.error_code or exc.type
    message = exc.api_message if isinstance(exc.api_message, str) else ""
    quota = (
        exc.status_code == 402
        or exc.type == "billing_error"
        or exc.error_code in ANTHROPIC_QUOTA_CODES
    )
    return ErrorFacts(
        status=exc.status_code,
        message=f"{label}: {message}" if label else message,
        retry_after=parse_retry_after(exc.response.headers),
        quota=quota,
        request_id=exc.request_id,
        stated_limits=stated_limits(exc.response.headers),
    )


# --- Gemini (google-genai) ---------------------------------------------------------------------


def map_gemini_error(
    exc: BaseException, *, provider: str, secret: str | None, timeout_s: float
) -> ProviderError:
    import httpx2
    from google.genai import errors as genai_errors

    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return timeout_error(provider, timeout_s)
    if isinstance(exc, httpx2.TransportError):
        return connection_error(provider, exc)
    if isinstance(exc, genai_errors.APIError):
        return error_from_facts(_gemini_facts(exc), provider=provider, secret=secret)
    if isinstance(exc, genai_errors.UnknownApiResponseError):
        return TransientProviderError("the response was not JSON", provider=provider)
    return unexpected_error(provider, exc, secret)


def _gemini_facts(exc: Any) -> ErrorFacts:
    details = gemini_error_details(exc.details)
    headers = getattr(exc.response, "headers", None)
    retry_after = parse_retry_after(headers)
    if retry_after is None:
        retry_after = gemini_retry_delay(details)
    reasons = {d.get("reason") for d in details if _detail_is(d, "ErrorInfo")}
    status_name = exc.status if isinstance(exc.status, str) else None
    message = exc.message if isinstance(exc.message, str) else ""
    return ErrorFacts(
        status=exc.code if isinstance(exc.code, int) else None,
        message=f"{status_name}: {message}" if status_name else message,
        retry_after=retry_after,
        quota=bool(reasons & GEMINI_BILLING_REASONS) or gemini_daily_quota_hit(details),
        auth=bool(reasons & GEMINI_AUTH_REASONS),
    )


def gemini_error_details(body: Any) -> list[dict[str, Any]]:
    """The ``error.details`` list of a google.rpc error body (empty when absent)."""
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def gemini_retry_delay(details: list[dict[str, Any]]) -> float | None:
    """``RetryInfo.retryDelay`` (a protobuf Duration such as ``"12.5s"``) in seconds."""
    for detail in details:
        if _detail_is(detail, "RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def gemini_daily_quota_hit(details: list[dict[str, Any]]) -> bool:
    """True when a ``QuotaFailure`` violation names a per-day quota."""
    for detail in details:
        if not _detail_is(detail, "QuotaFailure"):
            continue
        for violation in detail.get("violations") or []:
            if isinstance(violation, dict) and _PER_DAY.search(str(violation.get("quotaId", ""))):
                return True
    return False


def _detail_is(detail: dict[str, Any], kind: str) -> bool:
    return str(detail.get("@type", "")) == f"type.googleapis.com/google.rpc.{kind}"
