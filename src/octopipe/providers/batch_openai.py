"""Batch adapter for OpenAI (Files + Batches over ``/v1/chat/completions``).

Guarantees:

- ``submit`` uploads one JSONL file (``purpose="batch"``) whose lines are
  ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``, the body built by
  the realtime adapter's ``build_params`` (so native structured output is identical), then
  creates the batch with ``completion_window="24h"`` and ``metadata``. Every line is sent with
  the batch's ``model`` (OpenAI wants one model per file).
- ``collect`` streams *both* the output file and the error file line by line (neither is
  loaded whole), in the files' order, which is not input order. It works on any ended batch:
  an ``expired`` or ``cancelled`` one delivers the requests that finished (the output file)
  and ``not_run("expired" | "cancelled")`` for the ``batch_expired`` / ``batch_cancelled``
  lines of the error file; a ``failed`` one (rejected as a whole) has no files and yields
  nothing. A line that cannot be read (not JSON, no ``custom_id``, a body that is no chat
  completion) is skipped with a warning: its request is simply missing from the results, and
  the caller retries it.
- Each file is checked as it is read (``batch_base.Download``) against the ``bytes`` its
  ``FileObject`` reports, and both files together against ``request_counts``; a download
  that broke off or ended inside a line raises ``IncompleteResults`` once every readable line
  was yielded (see ``batch_base``), so no cut line is ever taken as dropped.
- SDK errors are mapped by ``errors_map.map_openai_error``, as in realtime.
- States: ``cancelling`` is reported as ``in_progress`` (not terminal yet); a ``failed``
  batch's ``errors.data`` becomes ``BatchStatus.error``.
- ``find`` follows the ``after`` cursor of ``batches.list`` (newest first) back to the first
  batch created before ``since``, whatever the number of newer batches.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import httpx2
import openai

from octopipe import fastjson
from octopipe.providers.base import LLMResponse, ProviderSettings, Usage
from octopipe.providers.batch_base import (
    BatchFinder,
    BatchHandle,
    BatchLineError,
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
from octopipe.providers.errors_map import (
    OPENAI_QUOTA_CODES,
    connection_error,
    map_openai_error,
)
from octopipe.providers.openai_adapter import OpenAIProvider, openai_usage

_log = logging.getLogger(__name__)
CHAT_URL: Literal["/v1/chat/completions"] = "/v1/chat/completions"
_STATES: dict[str, VendorBatchState] = {
    "validating": "validating",
    "in_progress": "in_progress",
    "finalizing": "finalizing",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelling": "in_progress",
    "cancelled": "cancelled",
}
_NOT_RUN: dict[str, Literal["cancelled", "expired"]] = {
    "batch_cancelled": "cancelled",
    "batch_expired": "expired",
}


class OpenAIBatchProvider:
    """``BatchProvider`` over ``AsyncOpenAI.files`` and ``AsyncOpenAI.batches``."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.name = settings.provider
        self._secret = settings.api_key
        self._timeout_s = settings.timeout_s
        self._builder = OpenAIProvider(settings)
        self._client = openai.AsyncOpenAI(
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout=settings.timeout_s,
            max_retries=settings.max_retries_sdk,
        )

    def jsonl(self, lines: Sequence[BatchRequestLine], model: str) -> bytes:
        """The input file for ``lines`` (public for tests and dry runs): each line the bytes
        of ``json.dumps({"custom_id", "method", "url", "body"}, ensure_ascii=False)``, the body
        from ``build_params``. The ``response_format`` (the step's schema, the same on every
        line) is encoded once, not once per line (``_body_json``)."""
        out = []
        formats: list[tuple[Any, Any, str]] = []  # the last format and its encoding
        for line in lines:
            request = line.request
            if request.model != model:  # the copy costs more than the rest of the line
                request = dataclasses.replace(request, model=model)
            body = self._builder.build_params(request)
            head = _LINE_HEAD.format(fastjson.dumps(line.custom_id))
            out.append((head + _body_json(body, request.schema, formats) + "}").encode())
        out.append(b"")
        return b"\n".join(out)  # one copy of the payload besides the lines

    async def submit(
        self, lines: Sequence[BatchRequestLine], *, model: str, metadata: dict[str, str]
    ) -> BatchHandle:
        check_custom_ids(lines)
        data = self.jsonl(lines, model)
        try:
            uploaded = await self._client.files.create(
                file=("octopipe-batch.jsonl", data, "application/jsonl"), purpose="batch"
            )
            batch = await self._client.batches.create(
                input_file_id=uploaded.id,
                endpoint=CHAT_URL,
                completion_window="24h",
                metadata=metadata,
            )
        except openai.OpenAIError as exc:
            raise self._mapped(exc) from None
        return _handle(self.name, batch)

    async def poll(self, handle: BatchHandle) -> BatchStatus:
        batch = await self._retrieve(handle)
        counts = batch.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        error = None
        if batch.errors and batch.errors.data:
            error = "; ".join(f"{e.code}: {e.message}" for e in batch.errors.data)[:500]
        return BatchStatus(
            state=_STATES.get(batch.status, "in_progress"),
            done=done,
            total=counts.total if counts else 0,
            failed=counts.failed if counts else 0,
            error=error,
        )

    async def collect(self, handle: BatchHandle) -> AsyncIterator[BatchResultLine]:
        batch = await self._retrieve(handle)
        downloads = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            download = Download(f"file {file_id}", expected_bytes=await self._size(file_id))
            downloads.append(download)
            async for result in self._read_file(file_id, download):
                yield result
        counts = batch.request_counts
        expected = (counts.completed + counts.failed) if counts else None
        check_complete(self.name, handle.provider_batch_id, downloads, expected)

    async def _read_file(self, file_id: str, download: Download) -> AsyncIterator[BatchResultLine]:
        """The results on the lines of one file, read through ``download``. A connection that
        fails before the response starts is an error; one that breaks off the body is a cut
        download."""
        started = False
        try:
            async with self._client.files.with_streaming_response.content(file_id) as resp:
                started = True
                download.expect_length(resp.headers)
                async for chunk in resp.iter_bytes():
                    for raw in download.feed(chunk):
                        if (result := read_result_line(raw, file_id, self._result)) is not None:
                            yield result
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            if not started:
                if isinstance(exc, httpx2.TransportError):
                    raise connection_error(self.name, exc) from None
                raise self._mapped(exc) from None
            download.fail(exc.__cause__ or exc)
        except openai.OpenAIError as exc:
            raise self._mapped(exc) from None
        last = download.finish()
        if last is not None and (result := read_result_line(last, file_id, self._result)):
            yield result

    async def _size(self, file_id: str) -> int | None:
        """The size OpenAI reports for a file, in bytes; ``None`` when it reports none or the
        lookup fails (the size is only a check: the download itself decides whether the
        results are there)."""
        try:
            info = await self._client.files.retrieve(file_id)
        except openai.OpenAIError as exc:
            reason = self._mapped(exc)  # redacted
            _log.warning("no size for %s (%s): its download is checked without it", file_id, reason)
            return None
        size = getattr(info, "bytes", None)
        return size if isinstance(size, int) and size > 0 else None

    async def cancel(self, handle: BatchHandle) -> None:
        try:
            await self._client.batches.cancel(handle.provider_batch_id)
        except openai.OpenAIError as exc:
            raise self._mapped(exc) from None

    def lister(self) -> None:
        """None: its batches are found by metadata (``finder``)."""
        return None

    def finder(self) -> BatchFinder:
        """This provider: its batches carry the metadata given at submit."""
        return self

    async def find(self, metadata_key: str, value: str, *, since: float) -> list[BatchHandle]:
        found: list[BatchHandle] = []
        try:
            # the SDK's pages follow the ``after`` cursor; the list is newest first
            async for batch in self._client.batches.list(limit=100):
                if float(batch.created_at) < since:
                    break
                if (batch.metadata or {}).get(metadata_key) == value:
                    found.append(_handle(self.name, batch))
        except openai.OpenAIError as exc:
            raise self._mapped(exc) from None
        return found

    async def aclose(self) -> None:
        await self._client.close()
        await self._builder.aclose()

    async def _retrieve(self, handle: BatchHandle) -> Any:
        try:
            return await self._client.batches.retrieve(handle.provider_batch_id)
        except openai.OpenAIError as exc:
            raise self._mapped(exc) from None

    def _mapped(self, exc: BaseException) -> Exception:
        return map_openai_error(
            exc, provider=self.name, secret=self._secret, timeout_s=self._timeout_s
        )

    def _result(self, line: dict[str, Any]) -> BatchResultLine:
        custom_id = line["custom_id"]
        response = as_dict(line.get("response"))
        if not response:
            error = as_dict(line.get("error"))
            code = str(error.get("code") or "")
            kind = _NOT_RUN.get(code)
            message = f"{code}: {error.get('message', '')}"
            err: BatchLineError = (
                not_run(kind, message)
                if kind
                else status_line_error(None, message, provider=self.name, secret=self._secret)
            )
            return BatchResultLine(custom_id, None, err)
        status = response.get("status_code")
        body = as_dict(response.get("body"))
        if status != 200:
            error = as_dict(body.get("error"))
            label = error.get("code") or error.get("type")
            message = f"{label}: {error.get('message', '')}" if label else str(error.get("message"))
            quota = bool({error.get("code"), error.get("type")} & OPENAI_QUOTA_CODES)
            return BatchResultLine(
                custom_id,
                None,
                status_line_error(
                    status if isinstance(status, int) else None,
                    message,
                    provider=self.name,
                    secret=self._secret,
                    quota=quota,
                ),
            )
        plain = plain_completion(body)
        if plain is not None:
            text, usage, finish_reason, model, completion_id = plain
            return BatchResultLine(
                custom_id,
                LLMResponse(
                    text=text,
                    usage=usage,
                    finish_reason=finish_reason,
                    model=model,
                    request_id=response.get("request_id") or completion_id,
                    latency_s=0.0,
                ),
            )
        completion = openai.types.chat.ChatCompletion.model_validate(body)
        choice = completion.choices[0] if completion.choices else None
        return BatchResultLine(
            custom_id,
            LLMResponse(
                text=(choice.message.content or "") if choice else "",
                usage=openai_usage(completion.usage),
                finish_reason=choice.finish_reason if choice else None,
                model=completion.model,
                request_id=response.get("request_id") or completion.id,
                latency_s=0.0,
            ),
        )


_LINE_HEAD = '{{"custom_id": {}, "method": "POST", "url": "' + CHAT_URL + '", "body": '


def _body_json(body: dict[str, Any], schema: object, formats: list[tuple[Any, Any, str]]) -> str:
    """``json.dumps(body, ensure_ascii=False)``, byte for byte, with a trailing
    ``response_format`` encoded once and reused while the next line's format is equal to it
    and holds the same ``schema`` object (equal dicts may differ in key order, the same object
    cannot). Another layout (no format, or not last) is encoded whole."""
    fmt = body.get("response_format")
    if fmt is None or len(body) < 2 or next(reversed(body)) != "response_format":
        return fastjson.dumps(body)
    if not formats or formats[0][1] is not schema or formats[0][0] != fmt:
        formats[:] = [(fmt, schema, fastjson.dumps(fmt))]
    rest = dict(body)
    del rest["response_format"]
    return fastjson.dumps(rest)[:-1] + ', "response_format": ' + formats[0][2] + "}"


_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
PlainCompletion = tuple[str, Usage, str, str, str]
"""An answer's text, usage, finish reason, model and completion id."""


def plain_completion(body: dict[str, Any]) -> PlainCompletion | None:
    """The answer of the common chat completion (a text content, integer token counts) read
    straight from the decoded JSON, or ``None`` for any other shape, which the SDK's model
    then validates. Saves the SDK's per-line validation, about a third of reading a line.

    Only bodies whose fields used here all have the types the SDK's model requires take this
    path, so it never accepts an answer value the SDK would read differently."""
    choices = body.get("choices")
    usage = body.get("usage")
    model, completion_id = body.get("model"), body.get("id")
    if not (
        type(choices) is list
        and choices
        and type(usage) is dict
        and type(model) is str
        and type(completion_id) is str
        and body.get("object") == "chat.completion"
        and type(body.get("created")) is int
    ):
        return None
    choice = choices[0]
    message = choice.get("message") if type(choice) is dict else None
    if type(message) is not dict or message.get("role") != "assistant":
        return None
    if type(choice.get("index")) is not int:
        return None
    content, finish_reason = message.get("content"), choice.get("finish_reason")
    tokens = _plain_usage(usage)
    if tokens is None or finish_reason not in _FINISH_REASONS:
        return None
    if content is not None and type(content) is not str:
        return None
    return content or "", tokens, finish_reason, model, completion_id


def _plain_usage(usage: dict[str, Any]) -> Usage | None:
    """``openai_usage`` of a decoded usage object with integer counts; ``None`` otherwise."""
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    if type(prompt) is not int or type(completion) is not int:
        return None
    if type(usage.get("total_tokens")) is not int:
        return None
    if details is None:
        details = {}
    elif type(details) is not dict:
        return None
    cached, writes = details.get("cached_tokens"), details.get("cache_write_tokens")
    if any(n is not None and type(n) is not int for n in (cached, writes)):
        return None
    return Usage(
        input_tokens=prompt,
        output_tokens=completion,
        cached_input_tokens=cached or 0,
        cache_write_tokens=writes or 0,
    )


def _handle(provider: str, batch: Any) -> BatchHandle:
    return BatchHandle(
        provider=provider,
        provider_batch_id=batch.id,
        created_at=float(batch.created_at),
        metadata=dict(batch.metadata or {}),
    )
