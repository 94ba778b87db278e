"""Batch adapter for Anthropic Message Batches.

Guarantees:

- ``submit`` sends ``{"requests": [{"custom_id", "params"}]}`` with ``params`` built by the
  realtime adapter's ``build_params`` (same forced-tool or ``output_config`` structured
  output), every request on the batch's ``model``.
- ``poll``: ``in_progress`` and ``canceling`` are ``in_progress``; ``ended`` is ``cancelled``
  when a cancel was initiated and something was canceled, ``expired`` when any request
  expired (the batch outlived its 24 h window), else ``completed``. ``failed`` counts
  errored + canceled + expired. The API has no whole-batch failure: a batch that failed
  entirely is ``completed`` with every request errored (``failed == total``).
- ``collect`` streams ``results_url`` line by line (the SDK's request, our own line reading).
  The answer of a ``succeeded`` message is the first ``tool_use`` block's input as JSON (a
  batch forces one tool; after a crash the adapter no longer knows the tool's name), else the
  text blocks. ``errored`` results are classified from ``error.type`` as in realtime;
  ``canceled`` / ``expired`` ones are ``not_run("cancelled" | "expired")``, and the
  requests that finished before the batch ended keep their answers. A line that cannot be read
  (not JSON, no ``custom_id``, an unknown result shape) is skipped with a warning -- the SDK's
  own decoder would abort the whole stream on it -- so its request is simply missing from the
  results and the caller retries it.
- The download is checked as it is read (``batch_base.Download``) against its Content-Length
  and the batch's ``request_counts`` (one result line per request once ended): a download
  that broke off, ended inside a line, or holds fewer lines than counted with no length to
  check raises ``IncompleteResults`` after every readable line was yielded.
- **No ``find``**: Message Batches have no metadata and list entries carry nothing of the
  requests, so ``finder()`` is ``None`` (the spec's ``can_find`` is False). The engine persists
  the batch id as soon as ``submit`` returns; after a crash in between it matches the intent
  against ``recent(since)`` (every batch created since then, following the list's
  ``after_id`` cursor, with its request count) instead.
  ``BatchHandle.metadata`` holds the submitted metadata locally only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import anthropic
import httpx2
from anthropic.types import Message

from octopipe.providers.anthropic_adapter import (
    AnthropicProvider,
    StructuredMode,
    answer_text,
    anthropic_usage,
)
from octopipe.providers.base import LLMResponse, ProviderSettings
from octopipe.providers.batch_base import (
    BatchHandle,
    BatchLister,
    BatchRequestLine,
    BatchResultLine,
    BatchStatus,
    Download,
    VendorBatchState,
    as_dict,
    check_complete,
    check_custom_ids,
    not_run,
    read_result_line,
    status_line_error,
)
from octopipe.providers.errors_map import connection_error, map_anthropic_error

# error.type -> HTTP status, so that per-request errors classify as in realtime
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_NOT_RUN: dict[str, Literal["cancelled", "expired"]] = {
    "canceled": "cancelled",
    "expired": "expired",
}


class AnthropicBatchProvider:
    """``BatchProvider`` over ``AsyncAnthropic.messages.batches``."""

    def __init__(
        self, settings: ProviderSettings, structured_mode: StructuredMode = "tool"
    ) -> None:
        self.name = settings.provider
        self._secret = settings.api_key
        self._timeout_s = settings.timeout_s
        self._builder = AnthropicProvider(settings, structured_mode=structured_mode)
        self._client = anthropic.AsyncAnthropic(
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout=settings.timeout_s,
            max_retries=settings.max_retries_sdk,
        )

    def requests(self, lines: Sequence[BatchRequestLine], model: str) -> list[dict[str, Any]]:
        """The ``requests`` list for ``lines`` (public for tests and dry runs)."""
        return [
            {
                "custom_id": line.custom_id,
                "params": self._builder.build_params(
                    dataclasses.replace(line.request, model=model)
                ),
            }
            for line in lines
        ]

    async def submit(
        self, lines: Sequence[BatchRequestLine], *, model: str, metadata: dict[str, str]
    ) -> BatchHandle:
        check_custom_ids(lines)
        try:
            batch = await self._client.messages.batches.create(
                requests=self.requests(lines, model)  # type: ignore[arg-type]
            )
        except anthropic.AnthropicError as exc:
            raise self._mapped(exc) from None
        return BatchHandle(
            provider=self.name,
            provider_batch_id=batch.id,
            created_at=batch.created_at.timestamp(),
            metadata=dict(metadata),
        )

    async def poll(self, handle: BatchHandle) -> BatchStatus:
        try:
            batch = await self._client.messages.batches.retrieve(handle.provider_batch_id)
        except anthropic.AnthropicError as exc:
            raise self._mapped(exc) from None
        c = batch.request_counts
        finished = c.succeeded + c.errored + c.canceled + c.expired
        state: VendorBatchState = "in_progress"
        if batch.processing_status == "ended":
            state = "completed"
            if batch.cancel_initiated_at is not None and c.canceled:
                state = "cancelled"
            elif c.expired:
                state = "expired"
        return BatchStatus(
            state=state,
            done=finished,
            total=finished + c.processing,
            failed=c.errored + c.canceled + c.expired,
        )

    async def collect(self, handle: BatchHandle) -> AsyncIterator[BatchResultLine]:
        batch_id = handle.provider_batch_id
        try:
            batch = await self._client.messages.batches.retrieve(batch_id)
            decoder = await self._client.messages.batches.results(batch_id)
        except anthropic.AnthropicError as exc:
            raise self._mapped(exc) from None
        except httpx2.TransportError as exc:
            raise connection_error(self.name, exc) from None
        response = decoder.http_response
        download = Download(f"results of {batch_id}")
        download.expect_length(response.headers)
        try:
            async for chunk in response.aiter_bytes():
                for raw in download.feed(chunk):
                    if (result := self._read_line(raw, batch_id)) is not None:
                        yield result
        except httpx2.TransportError as exc:
            download.fail(exc)
        finally:
            await response.aclose()
        last = download.finish()
        if last is not None and (result := self._read_line(last, batch_id)) is not None:
            yield result
        c = batch.request_counts
        expected = c.succeeded + c.errored + c.canceled + c.expired
        check_complete(self.name, batch_id, [download], expected)

    def finder(self) -> None:
        """None: Message Batches carry no metadata to find a batch by (module doc)."""
        return None

    def lister(self) -> BatchLister:
        """This adapter: its ``recent`` lists batches by size and creation time."""
        return self

    async def cancel(self, handle: BatchHandle) -> None:
        try:
            await self._client.messages.batches.cancel(handle.provider_batch_id)
        except anthropic.AnthropicError as exc:
            raise self._mapped(exc) from None

    async def recent(self, since: float) -> list[tuple[BatchHandle, int]]:
        """Batches created at or after ``since`` (Unix seconds), newest first, each with its
        number of requests: what the engine matches an unrecorded intent against, since
        Message Batches carry no metadata."""
        out: list[tuple[BatchHandle, int]] = []
        try:
            async for batch in self._client.messages.batches.list(limit=100):
                created = batch.created_at.timestamp()
                if created < since:
                    break
                c = batch.request_counts
                total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
                out.append((BatchHandle(self.name, batch.id, created), total))
        except anthropic.AnthropicError as exc:
            raise self._mapped(exc) from None
        return out

    async def aclose(self) -> None:
        await self._client.close()
        await self._builder.aclose()

    def _mapped(self, exc: BaseException) -> Exception:
        return map_anthropic_error(
            exc, provider=self.name, secret=self._secret, timeout_s=self._timeout_s
        )

    def _read_line(self, raw: str | bytes, batch_id: str) -> BatchResultLine | None:
        """One line of the results, or ``None`` (logged) when unreadable."""
        return read_result_line(raw, batch_id, self._entry)

    def _entry(self, entry: dict[str, Any]) -> BatchResultLine:
        return self._result(entry["custom_id"], as_dict(entry.get("result")))

    def _result(self, custom_id: str, result: dict[str, Any]) -> BatchResultLine:
        kind = result.get("type")
        if kind == "succeeded":
            # the SDK's model_construct builds nested blocks unvalidated, as its own decoder does
            message = Message.model_construct(**as_dict(result.get("message")))
            tool = next((b.name for b in message.content if b.type == "tool_use"), "")
            return BatchResultLine(
                custom_id,
                LLMResponse(
                    text=answer_text(message.content, tool),
                    usage=anthropic_usage(message.usage),
                    finish_reason=message.stop_reason,
                    model=message.model,
                    request_id=message.id,
                    latency_s=0.0,
                ),
            )
        if kind == "errored":
            error = as_dict(as_dict(result.get("error")).get("error"))
            error_type = str(error.get("type") or "")
            message_text = f"{error_type}: {error.get('message', '')}"
            return BatchResultLine(
                custom_id,
                None,
                status_line_error(
                    ERROR_STATUS.get(error_type, 500),
                    message_text,
                    provider=self.name,
                    secret=self._secret,
                    quota=error_type == "billing_error",
                ),
            )
        if kind in _NOT_RUN:
            return BatchResultLine(custom_id, None, not_run(_NOT_RUN[kind]))
        raise ValueError(f"unknown result type {kind!r}")
