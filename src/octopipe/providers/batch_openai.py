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
  nothing. A line that cannot be read (not JSON, cut short by an interrupted download, no
  ``custom_id``, a body that is no chat completion) is skipped with a warning: its request is
  simply missing from the results, and the caller retries it.
- SDK errors are mapped by ``errors_map.map_openai_error``, as in realtime; a connection lost
  while streaming a file is a ``TransientProviderError``.
- States: ``cancelling`` is reported as ``in_progress`` (not terminal yet); a ``failed``
  batch's ``errors.data`` becomes ``BatchStatus.error``.
- ``find`` pages through ``batches.list`` (newest first) up to ``max_scan`` batches.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import httpx2
import openai

from octopipe.providers.base import LLMResponse, ProviderSettings
from octopipe.providers.batch_base import (
    BatchHandle,
    BatchLineError,
    BatchRequestLine,
    BatchResultLine,
    BatchState,
    BatchStatus,
    as_dict,
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

CHAT_URL: Literal["/v1/chat/completions"] = "/v1/chat/completions"
_STATES: dict[str, BatchState] = {
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

    can_find = True

    def __init__(self, settings: ProviderSettings, max_scan: int = 500) -> None:
        self.name = settings.provider
        self.max_scan = max_scan
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
        """The input file for ``lines`` (public for tests and dry runs)."""
        out = []
        for line in lines:
            body = self._builder.build_params(dataclasses.replace(line.request, model=model))
            out.append(
                json.dumps(
                    {"custom_id": line.custom_id, "method": "POST", "url": CHAT_URL, "body": body},
                    ensure_ascii=False,
                ).encode()
            )
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
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            try:
                async with self._client.files.with_streaming_response.content(file_id) as resp:
                    async for raw in resp.iter_lines():
                        result = read_result_line(raw, file_id, self._result)
                        if result is not None:
                            yield result
            except openai.OpenAIError as exc:
                raise self._mapped(exc) from None
            except httpx2.TransportError as exc:
                raise connection_error(self.name, exc) from None

    async def cancel(self, handle: BatchHandle) -> None:
        try:
            await self._client.batches.cancel(handle.provider_batch_id)
        except openai.OpenAIError as exc:
            raise self._mapped(exc) from None

    async def find(self, metadata_key: str, value: str) -> list[BatchHandle]:
        found: list[BatchHandle] = []
        scanned = 0
        try:
            async for batch in self._client.batches.list(limit=100):
                if (batch.metadata or {}).get(metadata_key) == value:
                    found.append(_handle(self.name, batch))
                scanned += 1
                if scanned >= self.max_scan:
                    break
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


def _handle(provider: str, batch: Any) -> BatchHandle:
    return BatchHandle(
        provider=provider,
        provider_batch_id=batch.id,
        created_at=float(batch.created_at),
        metadata=dict(batch.metadata or {}),
    )
