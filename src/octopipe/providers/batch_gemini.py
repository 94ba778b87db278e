"""Batch adapter for the Gemini Developer API (``batchGenerateContent``, inline or file-based).

Guarantees:

- ``submit`` builds one item per line, ``{contents, config, metadata}``; ``config`` is the
  realtime adapter's ``build_config`` (same ``responseJsonSchema`` / ``responseSchema``
  structured output) without its per-request HTTP options, and each item's ``metadata`` is
  ``{"key": custom_id}``, which the API echoes back in its result (inline results are
  positional too, but the key survives a crash, a positional list does not).
- Inline vs file: a batch whose JSONL input file (``input_file``) would exceed
  ``inline_max_bytes`` (the registry's ``batch_inline_max_bytes``, 20 MB) is uploaded through
  the Files API (``client.aio.files.upload``, resumable) as ``{"key", "request"}`` lines and
  created with ``src="files/…"``; smaller batches go inline. The file's requests are the very
  bodies the SDK would send inline (its own converter builds them).
- Gemini batches have no metadata: the submitted metadata is encoded in ``displayName`` as
  ``octopipe?k=v&k2=v2`` (URL-encoded) and decoded by ``find``/``poll``. Keep it short: the
  display name is meant for humans, and long names may be refused by the API.
- States: ``PENDING``/``QUEUED`` -> ``validating``; ``RUNNING``/``CANCELLING``/``UPDATING``/
  ``PAUSED`` -> ``in_progress``; ``SUCCEEDED``/``PARTIALLY_SUCCEEDED`` -> ``completed``;
  ``FAILED``, ``CANCELLED``, ``EXPIRED`` -> the same. The Developer API's SDK drops
  ``batchStats`` and the operation's ``error``, so ``done``/``total`` come from the inline
  results once succeeded (0 before, and 0 for file-based jobs), and a failed job's
  ``BatchStatus.error`` only names the state.
- ``collect`` yields the inline responses, or streams the results file (``dest.file_name``,
  downloaded through ``client.aio.files.download`` into a spooled temporary file, then read
  line by line). Expired and cancelled jobs deliver no output at all (the API keeps no
  partial results), so nothing is yielded and every request counts as missing. A result that
  cannot be read (a line not JSON, no key, a response that does not parse) is skipped with a
  warning, so its request is missing and retried.
- A results file is checked (``batch_base.Download``) against the ``sizeBytes`` that
  ``files.get`` reports for it: a download that broke off, came short or ended inside a line
  raises ``IncompleteResults`` after every readable line was yielded. (The SDK drops the
  job's ``batchStats``, so there are no request counts to check; inline results arrive in the
  job's own JSON, whole or not at all.)
- Errors are mapped by ``errors_map.map_gemini_error``; per-request ``JobError`` codes
  (google.rpc numbers) are turned into HTTP statuses first.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import tempfile
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx2
from google.genai import _common, types
from google.genai.batches import _InlinedRequest_to_mldev

from octopipe import fastjson
from octopipe.errors import BadRequest, ProviderError
from octopipe.providers.base import LLMResponse, ProviderSettings
from octopipe.providers.batch_base import (
    BatchFinder,
    BatchHandle,
    BatchRequestLine,
    BatchResultLine,
    BatchStatus,
    Download,
    VendorBatchState,
    as_dict,
    check_complete,
    check_custom_ids,
    status_line_error,
)
from octopipe.providers.errors_map import map_gemini_error, redact, unexpected_error
from octopipe.providers.gemini_adapter import (
    SDK_ERRORS,
    GeminiProvider,
    SchemaField,
    gemini_finish_reason,
    gemini_text,
    gemini_usage,
)

log = logging.getLogger(__name__)

DISPLAY_PREFIX = "octopipe?"
INLINE_MAX_BYTES = 20_000_000
"""The Developer API's limit on an inline batch (the registry's ``batch_inline_max_bytes``)."""
INPUT_MIME_TYPE = "jsonl"  # what Google's batch guide passes to files.upload
# Results files are read from disk past this size rather than kept in memory.
SPOOL_MAX_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 256 * 1024  # a results file is read back in pieces of this size
_STATES: dict[str, VendorBatchState] = {
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

    def __init__(
        self,
        settings: ProviderSettings,
        schema_field: SchemaField = "response_json_schema",
        inline_max_bytes: int = INLINE_MAX_BYTES,
    ) -> None:
        self.name = settings.provider
        self.inline_max_bytes = inline_max_bytes
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

    def input_file(self, items: Sequence[types.InlinedRequest]) -> bytes:
        """The JSONL input file of a file-based batch: ``{"key", "request"}`` per item, the
        request built by the SDK's converter for inline items (public for tests)."""
        # google-genai has no public converter: these are the steps ``batches.create`` applies
        # to inline items (google-genai 3.4), so a file carries exactly the inline bodies.
        api_client = self._client._api_client
        out = []
        for item in items:
            wire = _common.encode_unserializable_types(
                _common.convert_to_dict(_InlinedRequest_to_mldev(api_client, item))
            )
            key = (item.metadata or {}).get("key")
            out.append(fastjson.dumps({"key": key, "request": wire["request"]}))
        return ("\n".join(out) + "\n").encode()

    async def submit(
        self, lines: Sequence[BatchRequestLine], *, model: str, metadata: dict[str, str]
    ) -> BatchHandle:
        check_custom_ids(lines)
        items = self.inline_requests(lines, model)
        data = self.input_file(items)
        src: list[types.InlinedRequest] | str = items
        if len(data) > self.inline_max_bytes:
            src = await self._upload(data)
        config = types.CreateBatchJobConfig(display_name=encode_display_name(metadata))
        job = await self._call(self._client.aio.batches.create(model=model, src=src, config=config))
        return self._handle(job)

    async def poll(self, handle: BatchHandle) -> BatchStatus:
        job = await self._get(handle)
        state_name = _state_name(job.state)
        state = _STATES.get(state_name, "in_progress")
        responses = (job.dest.inlined_responses or []) if job.dest else []
        failed = sum(1 for r in responses if r.error is not None or r.response is None)
        error = job.error.message if job.error is not None else None
        if state == "failed" and not error:
            error = f"the batch job ended {state_name}"
        return BatchStatus(
            state=state, done=len(responses), total=len(responses), failed=failed, error=error
        )

    async def collect(self, handle: BatchHandle) -> AsyncIterator[BatchResultLine]:
        job = await self._get(handle)
        if job.dest is None:
            return
        batch_id = handle.provider_batch_id
        for index, item in enumerate(job.dest.inlined_responses or []):
            custom_id = (item.metadata or {}).get("key")
            if custom_id is None:
                log.warning("skipped result %d of %s: it has no key metadata", index, batch_id)
                continue
            error = item.error
            yield self._result(
                custom_id,
                item.response,
                error.code if error is not None else None,
                error.message if error is not None else None,
            )
        if job.dest.file_name:
            name = job.dest.file_name
            download = Download(f"file {name}", expected_bytes=await self._size(name))
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES) as spool:
                await self._download(name, spool, download)
                spool.seek(0)
                for chunk in iter(lambda: spool.read(CHUNK_BYTES), b""):
                    for raw in download.feed(chunk):
                        if (result := self._read_file_line(raw, batch_id)) is not None:
                            yield result
            last = download.finish()
            if last is not None and (result := self._read_file_line(last, batch_id)):
                yield result
            check_complete(self.name, batch_id, [download], None)

    async def cancel(self, handle: BatchHandle) -> None:
        await self._call(self._client.aio.batches.cancel(name=handle.provider_batch_id))

    def lister(self) -> None:
        """None: its batches are found by metadata (``finder``)."""
        return None

    def finder(self) -> BatchFinder:
        """This provider: its batches carry the metadata given at submit."""
        return self

    async def find(self, metadata_key: str, value: str, *, since: float) -> list[BatchHandle]:
        found: list[BatchHandle] = []
        pager = await self._call(self._client.aio.batches.list(config={"page_size": 100}))
        try:
            # the pager follows ``nextPageToken``; the list is newest first
            async for job in pager:
                handle = self._handle(job)
                if job.create_time is not None and handle.created_at < since:
                    break
                if decode_display_name(job.display_name).get(metadata_key) == value:
                    found.append(handle)
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

    async def _size(self, name: str) -> int | None:
        """The size the Files API reports for a file, in bytes; ``None`` when it reports none
        or the lookup fails (the size is only a check: the download itself decides whether
        the results are there)."""
        try:
            info = await self._call(self._client.aio.files.get(name=name))
        except ProviderError as exc:
            log.warning("no size for %s (%s): its download is checked without it", name, exc)
            return None
        size = getattr(info, "size_bytes", None)
        return size if isinstance(size, int) and size > 0 else None

    async def _download(self, name: str, spool: Any, download: Download) -> None:
        """``name`` into ``spool``. A connection that breaks once the request reached the
        server is a cut download (``download.fail``), not an error: what arrived is still read
        (the SDK writes 1 MiB pieces, so a small file's part may be nothing at all)."""
        try:
            await self._client.aio.files.download(file=name, destination=spool)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            raise self._mapped(exc) from None
        except httpx2.TransportError as exc:
            download.fail(exc)
        except SDK_ERRORS as exc:
            raise self._mapped(exc) from None

    async def _upload(self, data: bytes) -> str:
        """Upload a batch input file; its resource name (``files/…``)."""
        config = types.UploadFileConfig(mime_type=INPUT_MIME_TYPE, display_name="octopipe-batch")
        try:
            uploaded = await self._call(
                self._client.aio.files.upload(file=io.BytesIO(data), config=config)
            )
        except KeyError as exc:  # the SDK found no upload URL in the answer
            raise unexpected_error(self.name, exc, self._secret) from None
        if not uploaded.name:
            raise unexpected_error(self.name, ValueError("uploaded file has no name"), None)
        return str(uploaded.name)

    def _read_file_line(self, raw: bytes, batch_id: str) -> BatchResultLine | None:
        """The result on one line of a results file, or ``None`` (logged) when unreadable."""
        if not raw.strip():
            return None
        try:
            line = fastjson.loads(raw)
            if not isinstance(line, dict) or not isinstance(line.get("key"), str):
                raise ValueError("not an object with a key")
            response = None
            if line.get("response") is not None:
                body = as_dict(line["response"])
                # the SDK's own parsing of a REST body (drops fields newer than the SDK)
                response = types.GenerateContentResponse._from_response(response=body, kwargs={})
            error = as_dict(line.get("error"))
            code = error.get("code")
            return self._result(
                line["key"],
                response,
                code if isinstance(code, int) else None,
                str(error["message"]) if error.get("message") else None,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            # ValueError covers JSON, UTF-8 and pydantic validation errors.
            log.warning("skipped an unreadable result line of %s (%s): %.80r", batch_id, exc, raw)
            return None

    def _result(
        self, custom_id: str, response: Any, error_code: int | None, error_message: str | None
    ) -> BatchResultLine:
        if response is not None and error_code is None and error_message is None:
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
        status = _RPC_HTTP.get(error_code, 500) if error_code is not None else None
        message = error_message or "no response"
        return BatchResultLine(
            custom_id,
            None,
            status_line_error(status, message, provider=self.name, secret=self._secret),
        )


def _state_name(state: Any) -> str:
    return str(getattr(state, "value", state) or "")
