"""OpenAI Files + Batches, as ``openai.AsyncOpenAI`` calls them.

Routes (relative to the OpenAI mount; the SDK's base URL ends in ``/v1``):

- ``POST /v1/files`` (multipart ``file`` + ``purpose``) -> ``FileObject``;
  ``GET /v1/files/{id}`` and ``GET /v1/files/{id}/content`` (raw bytes).
- ``POST /v1/batches`` ``{input_file_id, endpoint, completion_window, metadata}``,
  ``GET /v1/batches/{id}``, ``GET /v1/batches?after=&limit=`` (newest first),
  ``POST /v1/batches/{id}/cancel``.

Input lines are ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``; each
body is parsed by the realtime vendor. Output and error files are generated when the batch
completes: ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error":
null}``; failed requests (``status_code`` != 200, ``body.error``) go to the error file, and are
written *in reverse input order* in the output file so clients cannot rely on order.
A cancelled batch goes straight to ``cancelled`` (no ``cancelling`` pause); like an
``expired`` one, its output file holds the requests that finished first and its error file a
``batch_cancelled`` / ``batch_expired`` line (``response: null``) per request that never ran.
A job scheduled to fail ends ``failed`` with ``errors.data`` and no files. Dropped lines are in
neither file; a truncated job's output file is served cut in its last line (see
``emulator.batch_faults``), while its ``FileObject.bytes`` gives the whole file's size.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from octopipe.emulator.batches import (
    BatchJob,
    BatchRoutes,
    Handler,
    not_found,
    parse_line,
    read_json,
)
from octopipe.emulator.vendors.base import InvalidRequest, Reply
from octopipe.emulator.vendors.openai import OpenAIVendor

CHAT_URL = "/v1/chat/completions"
NOT_RUN_CODES = {
    "cancelled": ("batch_cancelled", "Batch was cancelled."),
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
}
FAILED_ERROR = {
    "code": "batch_failed",
    "line": None,
    "message": "The batch failed (emulated).",
    "param": None,
}


class OpenAIBatchRoutes:
    vendor_name = "openai"

    def __init__(self, shared: BatchRoutes) -> None:
        self.shared = shared
        self.store = shared.store
        self.vendor = OpenAIVendor()

    def routes(self) -> list[tuple[str, str, Handler]]:
        wrap = self.shared.wrap
        v = self.vendor
        return [
            ("POST", "/v1/files", wrap(v, "openai.files.create", self.upload)),
            ("GET", "/v1/files/{file_id}", wrap(v, "openai.files.retrieve", self.file_info)),
            ("GET", "/v1/files/{file_id}/content", wrap(v, "openai.files.content", self.content)),
            ("POST", "/v1/batches", wrap(v, "openai.batches.create", self.create, submit=True)),
            ("GET", "/v1/batches", wrap(v, "openai.batches.list", self.list_batches)),
            ("GET", "/v1/batches/{batch_id}", wrap(v, "openai.batches.retrieve", self.retrieve)),
            (
                "POST",
                "/v1/batches/{batch_id}/cancel",
                wrap(v, "openai.batches.cancel", self.cancel),
            ),
        ]

    # --- files --------------------------------------------------------------------------------

    async def upload(self, http: web.Request) -> Reply:
        form = await http.post()
        upload = form.get("file")
        purpose = str(form.get("purpose") or "")
        if not isinstance(upload, web.FileField) or not purpose:
            raise InvalidRequest("'file' and 'purpose' are required")
        data = upload.file.read()
        file_id = self.store.new_id("file-")
        self.store.files[file_id] = {
            "data": data,
            "filename": upload.filename or "upload.jsonl",
            "purpose": purpose,
            "created_at": int(time.time()),
        }
        return Reply(200, self._file_object(file_id))

    async def file_info(self, http: web.Request) -> Reply:
        file_id = http.match_info["file_id"]
        if self._file_bytes(file_id) is None:
            return not_found(self.vendor, f"file {file_id}")
        return Reply(200, self._file_object(file_id))

    async def content(self, http: web.Request) -> Reply | web.StreamResponse:
        file_id = http.match_info["file_id"]
        data = self._file_bytes(file_id)
        if data is None:
            return not_found(self.vendor, f"file {file_id}")
        job = self._job_of_file(file_id)
        if job is None:  # an uploaded file
            return web.Response(body=data, content_type="application/octet-stream")
        kind = "output" if file_id.endswith("-output") else "errors"
        return await self.shared.serve_results(
            http,
            job,
            kind,
            data,
            content_type="application/octet-stream",
            scheduled=kind == "output",
        )

    def _file_object(self, file_id: str) -> dict[str, Any]:
        meta = self.store.files.get(file_id) or {}
        data = self._file_bytes(file_id) or b""
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": meta.get("created_at", int(time.time())),
            "filename": meta.get("filename", f"{file_id}.jsonl"),
            "purpose": meta.get("purpose", "batch_output"),
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }

    def _file_bytes(self, file_id: str) -> bytes | None:
        if file_id in self.store.files:
            return bytes(self.store.files[file_id]["data"])
        job = self._job_of_file(file_id)
        if job is None:
            return None
        output, errors = self._result_files(job)
        data = output if file_id.endswith("-output") else errors
        return data if data else None

    def _job_of_file(self, file_id: str) -> BatchJob | None:
        """The job whose output or error file ``file_id`` is, if it is one."""
        batch_id, _, kind = file_id.removeprefix("file-").rpartition("-")
        if kind not in ("output", "errors"):
            return None
        return self.store.get(batch_id, self.vendor_name)

    # --- batches ------------------------------------------------------------------------------

    async def create(self, http: web.Request) -> Reply:
        body = await read_json(http)
        file_id = body.get("input_file_id")
        endpoint = body.get("endpoint")
        metadata = body.get("metadata") or {}
        if not isinstance(file_id, str) or endpoint != CHAT_URL or not isinstance(metadata, dict):
            raise InvalidRequest("input_file_id and endpoint /v1/chat/completions are required")
        stored = self.store.files.get(file_id)
        if stored is None:
            return not_found(self.vendor, f"file {file_id}")
        keys, requests, model = self._parse_file(stored["data"])
        job = self.store.create(
            self.vendor_name,
            model,
            keys,
            requests,
            prefix="batch_",
            metadata={str(k): str(v) for k, v in metadata.items()},
            extra={"input_file_id": file_id},
        )
        return Reply(200, self._batch_object(job))

    def _parse_file(self, data: bytes) -> tuple[list[str], list[Any], str]:
        keys: list[str] = []
        seen: set[str] = set()
        requests: list[Any] = []
        model = ""
        for raw in data.decode("utf-8").splitlines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                raise InvalidRequest("the input file is not JSONL") from None
            if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
                raise InvalidRequest("every line needs a custom_id")
            if line["custom_id"] in seen:
                raise InvalidRequest(f"duplicate custom_id {line['custom_id']}")
            keys.append(line["custom_id"])
            seen.add(line["custom_id"])
            parsed = parse_line(self.vendor, "openai.chat.completions", line.get("body"), {})
            if line.get("url") != CHAT_URL:
                parsed = f"url must be {CHAT_URL}"
            requests.append(parsed)
            if not isinstance(parsed, str):
                model = model or parsed.model
        if not keys:
            raise InvalidRequest("the input file is empty")
        return keys, requests, model

    async def list_batches(self, http: web.Request) -> Reply:
        jobs = self.store.listing(self.vendor_name)
        after = http.query.get("after")
        if after:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        limit = max(1, min(100, int(http.query.get("limit", "20") or 20)))
        page = jobs[:limit]
        data = [self._batch_object(j) for j in page]
        return Reply(
            200,
            {
                "object": "list",
                "data": data,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": len(jobs) > limit,
            },
        )

    async def retrieve(self, http: web.Request) -> Reply:
        job = self.store.get(http.match_info["batch_id"], self.vendor_name)
        if job is None:
            return not_found(self.vendor, f"batch {http.match_info['batch_id']}")
        return Reply(200, self._batch_object(job))

    async def cancel(self, http: web.Request) -> Reply:
        job = self.store.get(http.match_info["batch_id"], self.vendor_name)
        if job is None:
            return not_found(self.vendor, f"batch {http.match_info['batch_id']}")
        self.store.cancel(job)
        return Reply(200, self._batch_object(job))

    def _batch_object(self, job: BatchJob) -> dict[str, Any]:
        state = self.store.state(job)
        ended = self.store.ended_at(job)
        counts = self.store.counts(job, self.vendor)
        output, errors = self._result_files(job)
        created = int(job.created_wall)
        ended_int = int(ended) if ended is not None else None
        failed = state == "failed"
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": CHAT_URL,
            "model": job.model,
            "errors": {"object": "list", "data": [FAILED_ERROR]} if failed else None,
            "input_file_id": job.extra.get("input_file_id"),
            "completion_window": "24h",
            "status": state,
            "output_file_id": f"file-{job.id}-output" if output else None,
            "error_file_id": f"file-{job.id}-errors" if errors else None,
            "created_at": created,
            "in_progress_at": created,
            "expires_at": created + 86400,
            "finalizing_at": ended_int if state == "completed" else None,
            "completed_at": ended_int if state == "completed" else None,
            "failed_at": ended_int if failed else None,
            "expired_at": ended_int if state == "expired" else None,
            "cancelling_at": ended_int if state == "cancelled" else None,
            "cancelled_at": ended_int if state == "cancelled" else None,
            "request_counts": {
                "total": job.total,
                "completed": 0 if failed else counts.succeeded,
                "failed": 0 if failed else counts.errored + counts.not_run,
            },
            "metadata": job.metadata,
        }

    def _result_files(self, job: BatchJob) -> tuple[bytes, bytes]:
        """(output file, error file) of an ended job; empty bytes for an empty file.

        A failed job (rejected as a whole) and a running one have neither."""
        state = self.store.state(job)
        if state in ("in_progress", "failed"):
            return b"", b""
        cached = job.extra.get("result_files")
        if cached is not None:
            return cached
        out: list[str] = []
        err: list[str] = []
        not_run_code, not_run_message = NOT_RUN_CODES.get(state, NOT_RUN_CODES["cancelled"])
        for i, outcome in enumerate(self.store.outcomes(job, self.vendor)):
            if outcome.dropped:
                continue
            line: dict[str, Any] = {"id": f"batch_req_{job.id}_{i:06d}", "custom_id": outcome.key}
            if outcome.reply is None:
                line["response"] = None
                line["error"] = {"code": not_run_code, "message": not_run_message}
                err.append(json.dumps(line))
                continue
            request_id = outcome.reply.headers.get("x-request-id", f"req_{i}")
            line["response"] = {
                "status_code": outcome.reply.status,
                "request_id": request_id,
                "body": dict(outcome.reply.body),
            }
            line["error"] = None
            (out if outcome.reply.status == 200 else err).append(json.dumps(line))
        out.reverse()
        job.extra["result_files"] = files = (_jsonl(out), _jsonl(err))
        return files


def _jsonl(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode() if lines else b""
