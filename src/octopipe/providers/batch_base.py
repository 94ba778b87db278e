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
  A line it cannot read (not JSON, no id) is skipped and logged: that request is missing,
  like a request the vendor dropped, and the caller retries it.
- An *incomplete download* is never passed off as the batch's results: each results file is
  read through a ``Download``, which counts its bytes and lines against what should arrive
  (the size the provider reports for the file, else the response's Content-Length, and the
  request counts it reports for the batch). After yielding every line it could read,
  ``collect()`` raises ``errors.IncompleteResults`` when a download was cut (a connection that
  broke, a last line cut in half: ``certain``) or looks cut (fewer bytes than reported, or
  fewer lines than counted with no size to check). The caller fetches the results again
  before it takes any request as missing.
- ``find(key, value, since=t)`` pages through the vendor's batch list, newest first, back to
  the first batch created before ``t`` (Unix seconds, the vendor's clock), and returns those
  whose metadata has ``key == value``, however many newer batches the account holds: the
  engine writes an *intent* (with a unique key) before ``submit`` and, after a crash between
  the vendor's answer and its own bookkeeping, uses ``find`` to adopt the batch instead of
  creating a duplicate. ``find`` lives on a separate ``BatchFinder``, which ``finder()``
  returns only when the vendor keeps metadata at all (the spec's ``can_find``; Anthropic
  Message Batches do not: see ``batch_anthropic``, whose ``finder()`` is ``None``): a
  provider without the feature has no ``find`` to call, so absence of a feature is never
  mistaken for absence of a batch.

``custom_id`` constraint (the strictest of the three vendors, Anthropic's):
``^[a-zA-Z0-9_-]{1,64}$`` and unique within one batch. The engine passes short ids such as
``b12-u345`` and keeps the mapping to unit ids itself; ``check_custom_ids`` enforces the rule
before anything is sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from octopipe import fastjson
from octopipe.errors import IncompleteResults, ProviderError, UsageError
from octopipe.providers.base import LLMRequest, LLMResponse

VendorBatchState = Literal[
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

    state: VendorBatchState
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


@dataclass(slots=True)  # treat as immutable; not frozen: a frozen init costs ~3x, paid per call
class BatchResultLine:
    custom_id: str
    response: LLMResponse | None
    error: BatchLineError | None = None


@runtime_checkable
class BatchFinder(Protocol):
    """Finds a provider's batches by the metadata given at submit (see the module doc)."""

    async def find(self, metadata_key: str, value: str, *, since: float) -> list[BatchHandle]:
        """Batches created at or after ``since`` whose metadata has ``metadata_key == value``
        (see the module doc)."""
        ...


@runtime_checkable
class BatchLister(Protocol):
    """Lists a provider's recent batches with their sizes: the lookup for a vendor whose batches
    carry no metadata (Anthropic's Message Batches), matched by size and creation time."""

    async def recent(self, since: float) -> list[tuple[BatchHandle, int]]:
        """Batches created at or after ``since`` (Unix seconds), newest first, each with its
        number of requests."""
        ...


@runtime_checkable
class BatchProvider(Protocol):
    """A vendor adapter for its batch API."""

    name: str

    def finder(self) -> BatchFinder | None:
        """The lookup by metadata, or ``None`` when the vendor's batches carry none."""
        ...

    def lister(self) -> BatchLister | None:
        """The lookup by size and time, or ``None`` when the vendor offers none (a vendor with a
        ``finder`` needs none)."""
        ...

    async def submit(
        self, lines: Sequence[BatchRequestLine], *, model: str, metadata: dict[str, str]
    ) -> BatchHandle: ...

    async def poll(self, handle: BatchHandle) -> BatchStatus: ...

    def collect(self, handle: BatchHandle) -> AsyncIterator[BatchResultLine]:
        """Stream the results of an ended batch (see the module doc)."""
        ...

    async def cancel(self, handle: BatchHandle) -> None: ...

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


def read_result_line(
    raw: str | bytes, where: str, parse: Callable[[dict[str, Any]], BatchResultLine]
) -> BatchResultLine | None:
    """One line of a JSONL results file through ``parse``, or ``None`` (logged) when the line is
    blank or unreadable: not JSON, no ``custom_id``, or a shape ``parse`` rejects. Its request
    is then simply missing, and the engine retries it."""
    if not raw.strip():
        return None
    try:
        entry = fastjson.loads(raw)
        if not isinstance(entry, dict) or not isinstance(entry.get("custom_id"), str):
            raise ValueError("not an object with a custom_id")
        return parse(entry)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # ValueError covers JSON and pydantic validation errors.
        _log.warning("skipped an unreadable result line of %s (%s): %.80r", where, exc, raw)
        return None


# --- downloads of results files ---------------------------------------------------------------


@dataclass
class Download:
    """One results file as it arrives, split into lines, checked against what should arrive.

    Feed it the body's chunks (``feed``), then ``finish``; ``problem`` and ``suspect`` then
    say whether the download was cut. ``expected_bytes`` is the size the provider reports for
    the file (set it before reading), or the response's Content-Length (``expect_length``).
    """

    where: str
    expected_bytes: int | None = None
    bytes_read: int = 0
    lines: int = 0
    """Non-blank lines received (readable or not), the cut last line included."""
    cut_line: bool = False
    """The body ended inside a line: no newline and not readable as JSON."""
    broken: str | None = None
    """The connection broke before the body ended (the transport error's name)."""
    _tail: bytes = b""

    def expect_length(self, headers: Any) -> None:
        """Take the Content-Length as the expected size when the provider reported none
        (and the body is not compressed: then the header counts the compressed bytes)."""
        length = str(headers.get("content-length") or "")
        if self.expected_bytes is None and not headers.get("content-encoding") and length.isdigit():
            self.expected_bytes = int(length)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete lines ``chunk`` finishes (blank ones left out)."""
        self.bytes_read += len(chunk)
        *complete, self._tail = (self._tail + chunk).split(b"\n")
        out = [line for line in complete if line.strip()]
        self.lines += len(out)
        return out

    def finish(self) -> bytes | None:
        """The last line when the body did not end with a newline and it reads as JSON; a
        last line that does not is a line cut short (``cut_line``)."""
        tail, self._tail = self._tail, b""
        if not tail.strip():
            return None
        self.lines += 1
        try:
            fastjson.loads(tail)
        except ValueError:
            self.cut_line = True
            _log.warning("the results of %s end in a line cut short: %.80r", self.where, tail)
            return None
        return tail

    def fail(self, exc: BaseException) -> None:
        """The connection broke while the body was read."""
        self.broken = type(exc).__name__

    def problem(self) -> str | None:
        """Why this download is certainly incomplete, or ``None``."""
        parts = []
        if self.broken is not None:
            parts.append(f"the connection broke after {self.bytes_read:,} bytes ({self.broken})")
        if self.cut_line:
            parts.append("its last line is cut short")
        return "; ".join(parts) or None

    def suspect(self) -> str | None:
        """Why this download looks incomplete though nothing proves it, or ``None``."""
        if self.expected_bytes is not None and self.bytes_read < self.expected_bytes:
            return f"{self.bytes_read:,} of {self.expected_bytes:,} bytes"
        return None


def check_complete(
    provider: str, batch_id: str, downloads: Sequence[Download], expected_lines: int | None
) -> None:
    """Raise ``IncompleteResults`` when ``downloads`` (every results file of one batch, read
    to the end) were or look cut; ``expected_lines`` is the number of result lines the
    provider's counts promise, when it gives them."""
    signature = tuple(n for d in downloads for n in (d.bytes_read, d.lines))
    where = f"the results of batch {batch_id} are incomplete"
    certain = [f"{d.where}: {p}" for d in downloads if (p := d.problem())]
    if certain:
        raise IncompleteResults(
            f"{where} ({'; '.join(certain)})",
            provider=provider,
            batch_id=batch_id,
            certain=True,
            signature=signature,
        )
    suspect = [f"{d.where}: {p}" for d in downloads if (p := d.suspect())]
    got = sum(d.lines for d in downloads)
    unchecked = not downloads or any(d.expected_bytes is None for d in downloads)
    if expected_lines is not None and got < expected_lines and unchecked:
        suspect.append(f"{got:,} of the {expected_lines:,} lines the provider counts")
    if suspect:
        raise IncompleteResults(
            f"{where} ({'; '.join(suspect)})",
            provider=provider,
            batch_id=batch_id,
            certain=False,
            signature=signature,
        )
