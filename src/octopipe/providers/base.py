"""The provider contract: one request shape, one response shape, one protocol.

What this module guarantees:

- ``LLMRequest`` / ``LLMResponse`` / ``Usage`` are frozen, vendor-neutral values. The engine
  builds requests and reads responses without knowing which vendor served them.
- ``RealtimeProvider`` is the whole surface the engine needs for realtime calls:
  ``complete()`` either returns an ``LLMResponse`` or raises a ``ProviderError`` subclass from
  ``octopipe.errors`` (never a raw SDK exception, never after the request's timeout).
- ``ProviderSettings`` never shows its API key in ``repr()``.

``batch_base.py`` holds the ``BatchProvider`` protocol, sharing these request and usage types.
This module imports no adapter: which adapter serves which provider is the provider catalog's
knowledge (``providers/catalog.py``: ``make_provider``, ``resolve_api_key``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from octopipe.errors import MalformedResponse
from octopipe.providers.ratelimit_headers import StatedLimits

# Extra seconds granted beyond a request's own timeout before the adapter's outer deadline
# fires. The SDK timeouts are per network phase; the outer deadline bounds the whole call.
DEADLINE_GRACE_S = 1.0


@dataclass(slots=True)  # treat as immutable; not frozen: a frozen init costs ~3x, paid per call
class LLMRequest:
    """One LLM call for one unit at one step."""

    unit_id: str
    step: str
    model: str
    prompt: str
    system: str | None = None
    schema: dict[str, Any] | None = None
    schema_name: str = "response"
    max_tokens: int = 4096
    temperature: float | None = None
    structured_output: bool = True
    timeout_s: float = 120.0
    service_tier: str | None = None
    """The vendor's service tier to ask for (``"flex"``); ``None``: the default tier. Only
    adapters of providers whose spec has the ``flex`` capability send it."""

    @property
    def wants_structured_output(self) -> bool:
        """True when the vendor's native structured-output feature should be used."""
        return self.structured_output and self.schema is not None


@dataclass(slots=True)  # treat as immutable; not frozen: a frozen init costs ~3x, paid per call
class Usage:
    """Tokens used by one call.

    ``input_tokens`` counts every prompt token, cached or not; ``cached_input_tokens`` is the
    part of it served from the vendor's prompt cache (OpenAI and Gemini report it this way;
    the Anthropic adapter adds ``cache_read_input_tokens`` and ``cache_creation_input_tokens``
    back into ``input_tokens`` so the meaning is the same for every vendor). ``output_tokens``
    includes reasoning/thinking tokens, which every vendor bills as output.
    ``cache_write_tokens`` is the part of ``input_tokens`` written to the cache, billed at the
    model's cache-write rate (Anthropic ``cache_creation_input_tokens``, OpenAI
    ``cache_write_tokens`` when its usage details carry it; Gemini reports none: 0).
    """

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(slots=True)  # treat as immutable; not frozen: a frozen init costs ~3x, paid per call
class LLMResponse:
    """What came back. ``text`` is the raw answer: parsing and validation happen later.

    ``finish_reason`` is the vendor's own value (``stop``/``length``, ``end_turn``/``tool_use``/
    ``max_tokens``, ``STOP``/``MAX_TOKENS``); ``latency_s`` is wall time of the call.
    """

    text: str
    usage: Usage
    finish_reason: str | None
    model: str
    request_id: str | None
    latency_s: float
    service_tier: str | None = None
    """The tier the vendor says served the call (OpenAI: ``default``, ``flex``...)."""
    stated_limits: StatedLimits | None = None
    """The account's rate limits and what remains of them, as the answer's headers state
    them (OpenAI, Anthropic); ``None`` when they state none (Gemini, most local servers)."""


MAX_RAW_CHARS = 100_000


def malformed(provider: str, what: str, answer: Any, usage: Usage | None) -> MalformedResponse:
    """The error for an answer that lacks what its API promises: ``what`` says what is
    missing; the answer's body is kept (as JSON: a decoded body, or an SDK object that can
    dump itself)."""
    try:
        if isinstance(answer, dict | list):
            raw = json.dumps(answer, ensure_ascii=False, default=repr)
        else:
            raw = answer.model_dump_json(exclude_unset=True)
    except Exception:  # an SDK object that cannot dump itself: keep its repr
        raw = repr(answer)
    return MalformedResponse(
        f"malformed answer: {what}", provider=provider, raw=raw[:MAX_RAW_CHARS], usage=usage
    )


def read_answer(provider: str, answer: Any, convert: Any, usage: Any) -> LLMResponse:
    """``convert(answer)``, with any surprise in the answer's shape (a field missing, of the
    wrong type) turned into ``MalformedResponse`` that keeps the body and, when it can be
    read, the usage (a malformed answer may still have been billed)."""
    try:
        return convert(answer)
    except MalformedResponse:
        raise
    except Exception as exc:
        try:
            read_usage = usage(answer)
        except Exception:
            read_usage = None
        raise malformed(
            provider, f"{type(exc).__name__}: {exc}"[:300], answer, read_usage
        ) from None


@runtime_checkable
class RealtimeProvider(Protocol):
    """A vendor adapter for one-request-one-answer calls.

    ``endpoint`` is where its calls go (a base URL), named in outage messages and keeping the
    health of two servers of one provider apart; ``None`` when the adapter cannot say. It is a
    declared member: the engine reads it, never probes for it."""

    name: str

    @property
    def endpoint(self) -> str | None:
        """Where calls go (see the class doc)."""
        ...

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Send one request. Raises ``octopipe.errors.ProviderError`` subclasses only."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP client. The provider must not be used afterwards."""
        ...


@dataclass(frozen=True)
class ProviderSettings:
    """How to reach one provider. ``base_url=None`` keeps the SDK's default, which honours the
    provider's ``ProviderSpec.base_url_variable`` (``OPENAI_BASE_URL``, ...)."""

    provider: str
    api_key: str = field(repr=False)
    base_url: str | None = None
    timeout_s: float = 120.0
    max_retries_sdk: int = 0
