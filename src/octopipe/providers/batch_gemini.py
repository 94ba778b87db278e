"""Batch adapter for the Gemini Developer API (``batchGenerateContent``, inline requests).

Guarantees:

- ``submit`` calls ``client.aio.batches.create(model, src=[{contents, config, metadata}])``;
  ``config`` is the realtime adapter's ``build_config`` (same ``responseJsonSchema`` /
  ``responseSchema`` structured output) without its per-request HTTP options, and each item's
  ``metadata`` is ``{"key": custom_id}``, which the API echoes back in its result (results
  are positional too, but the key survives a crash, a positional list does not).
- Gemini batches have no metadata: the submitted metadata is encoded in ``displayName`` as
  ``octopipe?k=v&k2=v2`` (URL-encoded) and decoded by ``find``/``poll``. Keep it short: the
  display name is meant for humans, and long names may be refused by the API.
- States: ``PENDING``/``QUEUED`` -> ``validating``; ``RUNNING``/``CANCELLING``/``UPDATING``/
  ``PAUSED`` -> ``in_progress``; ``SUCCEEDED``/``PARTIALLY_SUCCEEDED`` -> ``completed``;
  ``FAILED``, ``CANCELLED``, ``EXPIRED`` -> the same. The Developer API's SDK drops
  ``batchStats``, so ``done``/``total`` come from the inline results once succeeded (0 before).
- Inline only: results arrive inside the batch resource, so ``collect`` reads them from one GET
  (inline batches are limited to 20 MB anyway). File-based batches are not implemented.
- Errors are mapped by ``errors_map.map_gemini_error``; per-request ``JobError`` codes
  (google.rpc numbers) are turned into HTTP statuses first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from google.genai import types

from octopipe.errors import BadRequest
from octopipe.providers.base import LLMResponse, ProviderSettings
from octopipe.providers.batch_base import (
    BatchHandle,
    BatchRequestLine,
    BatchResultLine,
    BatchState,
    BatchStatus,
    check_custom_ids,
    status_line_error,
)
from octopipe.providers.errors_map import map_gemini_error, redact
from octopipe.providers.gemini_adapter import (
    SDK_ERRORS,
    GeminiProvider,
    SchemaField,
    gemini_finish_reason,
    gemini_text,
    gemini_usage,
)

DISPLAY_PREFIX = "octopipe?"
_STATES: dict[str, BatchState] = {
    "JOB_STATE_PENDING": "validating",
    "JOB_STATE_QUEUED": "validating",
    "JOB_STATE_RUNNING": "in_progress",
    "JOB_STATE_CANCELLING": "in_progress",
    "JOB_STATE_UPDATING": "in_progress",
    "JOB_STATE_PAUSED": "in_progress",
    "JOB_STATE_SUCCEEDED": "completed",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "completed",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_EXPIRED": "expired",
}
# google.rpc.Code -> HTTP status
_RPC_HTTP = {1: 499, 3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 13: 500, 14: 503, 16: 401}


def encode_display_name(metadata: dict[str, str]) -> str:
    return DISPLAY_PREFIX + urlencode(sorted(metadata.items()))


def decode_display_name(name: str | None) -> dict[str, str]:
    if not name or not name.startswith(DISPLAY_PREFIX):
        return {}
    return dict(parse_qsl(name[len(DISPLAY_PREFIX) :], keep_blank_values=True))


class GeminiBatchProvider:
    """``BatchProvider`` over ``Client.aio.batches``."""

    can_find = True

    def __init__(
        self,
        settings: ProviderSettings,
        schema_field: SchemaField = "response_json_schema",
        max_scan: int = 500,
    ) -> None:
        self.name = settings.provider
        self.max_scan = max_scan
        self._secret = settings.api_key
        self._timeout_s = settings.timeout_s
        # The realtime adapter owns the genai client (v1beta, our httpx2 pool, no retries).
        self._realtime = GeminiProvider(settings, schema_field=schema_field)
        self._client = self._realtime.client

    def inline_requests(
        self, lines: Sequence[BatchRequestLine], model: str
    ) -> list[types.InlinedRequest]:
        """The ``src`` list for ``lines`` (public for tests and dry runs)."""
        items = []
        for line in lines:
            request = dataclasses.replace(line.request, model=model)
            config = self._realtime.build_config(request).model_copy(update={"http_options": None})
            items.append(
                types.InlinedRequest(
                    contents=request.prompt, config=config, metadata={"key": line.custom_id}
                )
            )
        return items

    async def submit(
        self, lines: Sequence[BatchRequestLine], *, model: str, metadata: dict[str, str]
    ) -> BatchHandle:
        check_custom_ids(lines)
        src = self.inline_requests(lines, model)
        config = types.CreateBatchJobConfig(display_name=encode_display_name(metadata))
        job = await self._call(self._client.aio.batches.create(model=model, src=src, config=config))
        return self._handle(job)

    async def poll(self, handle: BatchHandle) -> BatchStatus:
        job = await self._get(handle)
        state = _STATES.get(_state_name(job.state), "in_progress")
        responses = (job.dest.inlined_responses or []) if job.dest else []
        failed = sum(1 for r in responses if r.error is not None or r.response is None)
        error = job.error.message if job.error is not None else None
        return BatchStatus(
            state=state, done=len(responses), total=len(responses), failed=failed, error=error
        )

    async def collect(self, handle: BatchHandle) -> AsyncIterator[BatchResultLine]:
        job = await self._get(handle)
        responses = (job.dest.inlined_responses or []) if job.dest else []
        for index, item in enumerate(responses):
            custom_id = (item.metadata or {}).get("key")
            if custom_id is None:
                raise BadRequest(
                    f"result {index} of batch {handle.provider_batch_id} has no key metadata",
                    provider=self.name,
                )
            yield self._result(custom_id, item)

    async def cancel(self, handle: BatchHandle) -> None:
        await self._call(self._client.aio.batches.cancel(name=handle.provider_batch_id))

    async def find(self, metadata_key: str, value: str) -> list[BatchHandle]:
        found: list[BatchHandle] = []
        pager = await self._call(self._client.aio.batches.list(config={"page_size": 100}))
        scanned = 0
        try:
            async for job in pager:
                if decode_display_name(job.display_name).get(metadata_key) == value:
                    found.append(self._handle(job))
                scanned += 1
                if scanned >= self.max_scan:
                    break
        except SDK_ERRORS as exc:
            raise self._mapped(exc) from None
        return found

    async def aclose(self) -> None:
        await self._realtime.aclose()

    async def _get(self, handle: BatchHandle) -> Any:
        return await self._call(self._client.aio.batches.get(name=handle.provider_batch_id))

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except SDK_ERRORS as exc:
            raise self._mapped(exc) from None
        except ValueError as exc:  # the SDK refused the request before sending it
            message = redact(str(exc), self._secret)[:300]
            raise BadRequest(f"request refused by the SDK: {message}", provider=self.name) from None

    def _mapped(self, exc: BaseException) -> Exception:
        return map_gemini_error(
            exc, provider=self.name, secret=self._secret, timeout_s=self._timeout_s
        )

    def _handle(self, job: Any) -> BatchHandle:
        created = job.create_time.timestamp() if job.create_time else 0.0
        return BatchHandle(
            provider=self.name,
            provider_batch_id=job.name,
            created_at=created,
            metadata=decode_display_name(job.display_name),
        )

    def _result(self, custom_id: str, item: Any) -> BatchResultLine:
        if item.response is not None and item.error is None:
            response = item.response
            return BatchResultLine(
                custom_id,
                LLMResponse(
                    text=gemini_text(response),
                    usage=gemini_usage(response.usage_metadata),
                    finish_reason=gemini_finish_reason(response),
                    model=response.model_version or "",
                    request_id=response.response_id,
                    latency_s=0.0,
                ),
            )
        error = item.error
        code = error.code if error is not None else None
        status = _RPC_HTTP.get(code, 500) if isinstance(code, int) else None
        message = (error.message if error is not None else None) or "no response"
        return BatchResultLine(
            custom_id,
            None,
            status_line_error(status, message, provider=self.name, secret=self._secret),
        )


def _state_name(state: Any) -> str:
    return str(getattr(state, "value", state) or "")
