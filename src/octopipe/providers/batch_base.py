"""The batch contract: submit many requests at once, poll, stream the results back.

What this module guarantees:

- ``BatchRequestLine`` / ``BatchHandle`` / ``BatchStatus`` / ``BatchResultLine`` are frozen,
  vendor-neutral values shared by the three batch adapters.
- ``BatchProvider`` is the whole surface the engine needs for the vendors' batch APIs
  (about half the realtime price). Every method raises only ``octopipe.errors.ProviderError``
  subclasses, mapped exactly as in realtime (a 429 on submit is ``RateLimited``, ...).
- ``collect()`` streams one ``BatchResultLine`` per request of the batch that has a result,
  in *no particular order*: join on ``custom_id``. A request that failed inside the batch has
  ``response=None`` and an ``error``; requests that never ran because the batch was cancelled
  or expired come back as ``not_run("cancelled" | "expired")`` where the vendor reports them,
  and the requests that finished before such a batch ended keep their answers (salvage).
  ``collect()`` never raises on the *content* of a results file: a line it cannot read (not
  JSON, cut by an interrupted download, no id) is skipped and logged, so that request is
  simply missing, like a request the vendor dropped. The caller retries missing requests.
- ``find(key, value)`` lists recent batches and returns those whose metadata has
  ``key == value``: the engine writes an *intent* (with a unique key) before ``submit`` and,
  after a crash between the vendor's answer and its own bookkeeping, uses ``find`` to adopt the
  batch instead of creating a duplicate. ``can_find`` says whether the vendor keeps metadata
  at all (Anthropic Message Batches do not: see ``batch_anthropic``); when it is ``False``,
  ``find`` raises ``UsageError`` rather than answering "nothing found", so that absence of a
  feature is never mistaken for absence of a batch.

``custom_id`` constraint (the strictest of the three vendors, Anthropic's):
``^[a-zA-Z0-9_-]{1,64}$`` and unique within one batch. The engine passes short ids such as
``b12-u345`` and keeps the mapping to unit ids itself; ``check_custom_ids`` enforces the rule
before anything is sent.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from octopipe.errors import ProviderError, UsageError
from octopipe.providers.base import LLMRequest, LLMResponse

BatchState = Literal[
    "validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelled"
]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled"})
CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# The metadata key carrying a batch's intent id; any key works, this one is conventional.
INTENT_KEY = "octopipe_intent"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRequestLine:
    """One request of a batch. ``custom_id``: see the module doc for the allowed form."""

    custom_id: str
    request: LLMRequest


@dataclass(frozen=True)
class BatchHandle:
    """What identifies a submitted batch; persist it (all fields are JSON-friendly).

    ``created_at`` is a Unix timestamp (seconds). ``metadata`` is the metadata given at
    submit (as the vendor echoes it back for ``find`` results).
    """

    provider: str
    provider_batch_id: str
    created_at: float
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchStatus:
    """Vendor state mapped onto OpenAI's vocabulary.

    ``done`` counts requests finished (successfully or not), ``failed`` those that failed;
    ``error`` explains a batch-level failure. Gemini's Developer API reports no counts: there,
    ``done`` is ``total`` once the job has ended and 0 before (``total`` may be 0 when unknown).
    """

    state: BatchState
    done: int
    total: int
    failed: int
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class BatchLineError:
    """Why one request of a batch has no answer.

    ``type`` is the name of the ``octopipe.errors`` class the same failure would raise in
    realtime (``BadRequest``, ``RateLimited``, ``TransientProviderError`` ...), or
    ``"cancelled"`` / ``"expired"`` for requests that never ran. ``retryable`` follows it.
    """

    type: str
    status: int | None
    message: str
    retryable: bool


@dataclass(frozen=True)
class BatchResultLine:
    custom_id: str
    response: LLMResponse | None
    error: BatchLineError | None = None


@runtime_checkable
class BatchProvider(Protocol):
    """A vendor adapter for its batch API."""

    name: str
    can_find: bool

    async def submit(
        self, lines: Sequence[BatchRequestLine], *, model: str, metadata: dict[str, str]
    ) -> BatchHandle: ...

    async def poll(self, handle: BatchHandle) -> BatchStatus: ...

    def collect(self, handle: BatchHandle) -> AsyncIterator[BatchResultLine]:
        """Stream the results of an ended batch (see the module doc)."""
        ...

    async def cancel(self, handle: BatchHandle) -> None: ...

    async def find(self, metadata_key: str, value: str) -> list[BatchHandle]: ...

    async def aclose(self) -> None: ...


def check_custom_ids(lines: Sequence[BatchRequestLine]) -> None:
    """Raise ``UsageError`` for an empty batch, a bad or a duplicate ``custom_id``."""
    if not lines:
        raise UsageError("a batch needs at least one request")
    seen: set[str] = set()
    for line in lines:
        if not CUSTOM_ID_PATTERN.match(line.custom_id):
            raise UsageError(
                f"custom_id {line.custom_id!r} must match {CUSTOM_ID_PATTERN.pattern} "
                "(the Anthropic limit, applied to every vendor)"
            )
        if line.custom_id in seen:
            raise UsageError(f"custom_id {line.custom_id!r} appears twice in one batch")
        seen.add(line.custom_id)


def line_error(error: ProviderError) -> BatchLineError:
    """A ``BatchLineError`` describing ``error`` (as the realtime path would have raised it)."""
    return BatchLineError(
        type=type(error).__name__,
        status=error.status,
        message=str(error),
        retryable=error.retryable,
    )


def not_run(kind: Literal["cancelled", "expired"], message: str = "") -> BatchLineError:
    return BatchLineError(
        type=kind, status=None, message=message or f"request {kind}", retryable=True
    )


def unsupported_find(provider: str) -> UsageError:
    return UsageError(
        f"{provider} batches carry no metadata, so a lost batch cannot be found by intent; "
        "persist the batch id as soon as submit() returns"
    )


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else an empty one (wire bodies are untrusted)."""
    return value if isinstance(value, dict) else {}


def status_line_error(
    status: int | None, message: str, *, provider: str, secret: str | None, quota: bool = False
) -> BatchLineError:
    """A per-request failure reported inside a batch, classified as realtime would be."""
    from octopipe.providers.errors_map import ErrorFacts, error_from_facts

    facts = ErrorFacts(status=status, message=message, quota=quota)
    return line_error(error_from_facts(facts, provider=provider, secret=secret))


def make_batch_provider(settings: Any) -> BatchProvider:
    """The batch adapter named by ``settings.provider`` (a ``ProviderSettings``); the SDK is
    imported only when asked for. ``openai-compatible`` servers have no batch API."""
    name = settings.provider
    if name == "openai":
        from octopipe.providers.batch_openai import OpenAIBatchProvider

        return OpenAIBatchProvider(settings)
    if name == "anthropic":
        from octopipe.providers.batch_anthropic import AnthropicBatchProvider

        return AnthropicBatchProvider(settings)
    if name == "gemini":
        from octopipe.providers.batch_gemini import GeminiBatchProvider

        return GeminiBatchProvider(settings)
    raise UsageError(f"provider {name!r} has no batch API; use openai, anthropic or gemini")


def read_result_line(
    raw: str, where: str, parse: Callable[[dict[str, Any]], BatchResultLine]
) -> BatchResultLine | None:
    """One line of a JSONL results file through ``parse``, or ``None`` (logged) when the line is
    blank or unreadable: cut short by an interrupted download, not JSON, no ``custom_id``, or a
    shape ``parse`` rejects. Its request is then simply missing, and the engine retries it."""
    if not raw.strip():
        return None
    try:
        entry = json.loads(raw)
        if not isinstance(entry, dict) or not isinstance(entry.get("custom_id"), str):
            raise ValueError("not an object with a custom_id")
        return parse(entry)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # ValueError covers JSON and pydantic validation errors.
        _log.warning("skipped an unreadable result line of %s (%s): %.80r", where, exc, raw)
        return None
