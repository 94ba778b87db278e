"""Gemini Batch API (Developer API, inline and file-based requests), as ``google-genai`` calls it.

Routes (relative to the Gemini mount; the SDK adds the API version):

- ``POST /{v}/models/{model}:batchGenerateContent`` with ``{"batch": {"displayName",
  "inputConfig": {"requests": {"requests": [{"request", "metadata"}]}}}}`` (inline) or
  ``"inputConfig": {"fileName": "files/…"}`` (a JSONL file of ``{"key", "request"}`` lines
  uploaded through ``gemini_files``);
- ``GET /{v}/batches/{id}``, ``POST /{v}/batches/{id}:cancel`` (empty object),
  ``GET /{v}/batches?pageSize=&pageToken=`` (``{"operations", "nextPageToken"}``, newest
  first, the token an opaque cursor); the Files routes of ``gemini_files``.

Create, get and list answer with the long-running ``Operation``: ``{"name": "batches/…",
"metadata": {"@type", "model", "displayName", "state": "BATCH_STATE_…", "createTime",
"updateTime", "endTime", "batchStats" (int64 strings), "output"}, "done", "response"}``. Once
succeeded, an inline job's ``output.inlinedResponses.inlinedResponses`` holds, *in input
order*, ``{"response": GenerateContentResponse, "metadata"}`` or ``{"error": {code, message},
"metadata"}``, the request's ``metadata`` echoed back; a file-based job's ``output`` is
``{"responsesFile": "files/…"}``, a JSONL file of ``{"key", "response"}`` / ``{"key", "error":
{code, message, status}}`` lines in reverse input order. Dropped lines are left out of both; a
cut download of a results file stops in its last line (its ``sizeBytes`` is the whole file's).

A cancelled job (``BATCH_STATE_CANCELLED``) and an expired one (``BATCH_STATE_EXPIRED``, "no
results to retrieve") have no output, whatever finished before they ended. A job scheduled to
fail ends ``BATCH_STATE_FAILED`` with an Operation ``error`` and no output (google-genai drops
that ``error`` in Developer-API mode).

At the root mount only ``v1beta`` is served: with ``v1``, ``/v1/batches/{id}`` would collide
with OpenAI's path (use the ``/gemini`` mount, which serves both versions).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from octopipe.emulator.batches import (
    BatchJob,
    BatchRoutes,
    Handler,
    LineOutcome,
    not_found,
    parse_line,
    read_json,
    rfc3339,
)
from octopipe.emulator.vendors.base import InvalidRequest, Reply
from octopipe.emulator.vendors.gemini import GeminiVendor
from octopipe.emulator.vendors.gemini_files import GeminiFileRoutes

TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta."
STATES = {
    "in_progress": "BATCH_STATE_RUNNING",
    "completed": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "expired": "BATCH_STATE_EXPIRED",
    "cancelled": "BATCH_STATE_CANCELLED",
}
RESULTS_SUFFIX = "-results"


class GeminiBatchRoutes:
    vendor_name = "gemini"

    def __init__(self, shared: BatchRoutes) -> None:
        self.shared = shared
        self.store = shared.store
        self.vendor = GeminiVendor()
        self.files = GeminiFileRoutes(shared, self.vendor, self.results_file, self.send_results)

    def routes(self, *, root: bool = False) -> list[tuple[str, str, Handler]]:
        wrap = self.shared.wrap
        v = self.vendor
        version = "{version:v1beta}" if root else "{version:v1beta|v1}"
        batch = f"/{version}/batches/{{batch_id:[^/:]+}}"
        return [
            (
                "POST",
                f"/{version}/models/{{model:[^/:]+}}:batchGenerateContent",
                wrap(v, "gemini.batches.create", self.create, submit=True),
            ),
            ("GET", f"/{version}/batches", wrap(v, "gemini.batches.list", self.list_batches)),
            ("GET", batch, wrap(v, "gemini.batches.get", self.get)),
            ("POST", batch + ":cancel", wrap(v, "gemini.batches.cancel", self.cancel)),
            *self.files.routes(version),
        ]

    async def create(self, http: web.Request) -> Reply:
        body = await read_json(http)
        batch = body.get("batch")
        if not isinstance(batch, dict):
            raise InvalidRequest("'batch' is required")
        config = batch.get("inputConfig")
        config = config if isinstance(config, dict) else {}
        file_name = config.get("fileName")
        items: Any
        if isinstance(file_name, str):
            stored = self.store.files.get(file_name)
            if stored is None:
                return not_found(self.vendor, file_name)
            items = _file_items(stored["data"])
        else:
            inline = config.get("requests")
            items = inline.get("requests") if isinstance(inline, dict) else None
        if not isinstance(items, list) or not items:
            raise InvalidRequest("inputConfig needs requests.requests or a fileName")
        model = http.match_info["model"]
        match = {"model_action": f"{model}:generateContent"}
        keys: list[str] = []
        requests: list[Any] = []
        metas: list[dict[str, str]] = []
        for i, raw_item in enumerate(items):
            item: dict[str, Any] = raw_item if isinstance(raw_item, dict) else {}
            raw_meta = item.get("metadata")
            meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
            metas.append({str(k): str(val) for k, val in meta.items()})
            keys.append(str(item.get("key", meta.get("key", i))))
            requests.append(
                parse_line(self.vendor, "gemini.generateContent", item.get("request"), match)
            )
        extra: dict[str, Any] = {"display_name": str(batch.get("displayName") or "")}
        if isinstance(file_name, str):
            extra["input_file"] = file_name
        else:
            extra["line_metadata"] = metas
        job = self.store.create(
            self.vendor_name, model, keys, requests, prefix="gbatch", extra=extra
        )
        return Reply(200, self._operation(job))

    async def list_batches(self, http: web.Request) -> Reply:
        """Newest first, ``pageSize`` (1-1000, default 50) per page. ``nextPageToken`` is an
        opaque cursor (the last batch listed), so batches created while a client pages do not
        shift the pages it has not read; a token that names no batch is refused (400)."""
        jobs = self.store.listing(self.vendor_name)
        size = max(1, min(1000, int(http.query.get("pageSize") or 50)))
        token = http.query.get("pageToken")
        if token:
            ids = [j.id for j in jobs]
            after = _page_cursor(token)
            if after not in ids:
                raise InvalidRequest("invalid page token")
            jobs = jobs[ids.index(after) + 1 :]
        page = jobs[:size]
        body: dict[str, Any] = {"operations": [self._operation(j) for j in page]}
        if len(jobs) > size:
            body["nextPageToken"] = base64.urlsafe_b64encode(page[-1].id.encode()).decode()
        return Reply(200, body)

    async def get(self, http: web.Request) -> Reply:
        job = self.store.get(http.match_info["batch_id"], self.vendor_name)
        if job is None:
            return not_found(self.vendor, "batch")
        return Reply(200, self._operation(job))

    async def cancel(self, http: web.Request) -> Reply:
        job = self.store.get(http.match_info["batch_id"], self.vendor_name)
        if job is None:
            return not_found(self.vendor, "batch")
        self.store.cancel(job)
        return Reply(200, {})

    def results_file(self, name: str) -> bytes | None:
        """The bytes of a file-based job's results file ``files/<job id>-results``; ``None``
        when ``name`` is no such file (yet)."""
        job = self._job_of_results(name)
        if job is None or "input_file" not in job.extra or self.store.state(job) != "completed":
            return None
        lines = [
            json.dumps({"key": outcome.key, **_result(outcome, rpc_status=True)})
            for outcome in self.store.outcomes(job, self.vendor)
            if outcome.reply is not None and not outcome.dropped
        ]
        lines.reverse()
        return ("\n".join(lines) + "\n").encode() if lines else b""

    async def send_results(self, http: web.Request, name: str, data: bytes) -> web.StreamResponse:
        """A download of a results file, cut when the fault plan cuts it."""
        job = self._job_of_results(name)
        if job is None:
            return web.Response(body=data, content_type="application/octet-stream")
        return await self.shared.serve_results(
            http, job, "results", data, content_type="application/octet-stream"
        )

    def _job_of_results(self, name: str) -> BatchJob | None:
        job_id = name.removeprefix("files/").removesuffix(RESULTS_SUFFIX)
        return self.store.get(job_id, self.vendor_name)

    def _operation(self, job: BatchJob) -> dict[str, Any]:
        state = self.store.state(job)
        ended = self.store.ended_at(job)
        counts = self.store.counts(job, self.vendor)
        meta: dict[str, Any] = {
            "@type": TYPE + "GenerateContentBatch",
            "model": f"models/{job.model}",
            "displayName": job.extra.get("display_name", ""),
            "state": STATES[state],
            "createTime": rfc3339(job.created_wall),
            "updateTime": rfc3339(ended if ended is not None else job.created_wall),
            "batchStats": {
                "requestCount": str(job.total),
                "successfulRequestCount": str(counts.succeeded),
                "failedRequestCount": str(counts.errored + counts.not_run),
                "pendingRequestCount": str(job.total if ended is None else 0),
            },
        }
        operation: dict[str, Any] = {"name": f"batches/{job.id}", "metadata": meta}
        if ended is not None:
            meta["endTime"] = rfc3339(ended)
            operation["done"] = True
        if state == "failed":
            operation["error"] = {"code": 13, "message": "The batch job failed (emulated)."}
        if state == "completed":
            output: dict[str, Any]
            if "input_file" in job.extra:
                output = {"responsesFile": f"files/{job.id}{RESULTS_SUFFIX}"}
            else:
                output = {"inlinedResponses": {"inlinedResponses": self._inlined(job)}}
            meta["output"] = output
            operation["response"] = {"@type": TYPE + "GenerateContentBatchOutput", **output}
        return operation

    def _inlined(self, job: BatchJob) -> list[dict[str, Any]]:
        metas: list[dict[str, str]] = job.extra.get("line_metadata", [])
        responses = []
        for outcome, meta in zip(self.store.outcomes(job, self.vendor), metas, strict=True):
            if outcome.reply is None or outcome.dropped:
                continue
            item: dict[str, Any] = {"metadata": meta} if meta else {}
            item.update(_result(outcome, rpc_status=False))
            responses.append(item)
        return responses


def _result(outcome: LineOutcome, *, rpc_status: bool) -> dict[str, Any]:
    """``{"response": ...}`` or ``{"error": {code, message[, status]}}`` for a finished line."""
    reply = outcome.reply
    assert reply is not None
    if reply.status == 200:
        return {"response": dict(reply.body)}
    error = dict(reply.body).get("error") or {}
    status = str(error.get("status", ""))
    rendered: dict[str, Any] = {"code": _grpc_code(status), "message": error.get("message", "")}
    if rpc_status:
        rendered["status"] = status
    return {"error": rendered}


def _page_cursor(token: str) -> str | None:
    """The batch id a page token stands for (``None`` when it is no token of ours)."""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _file_items(data: bytes) -> list[dict[str, Any]]:
    """The ``{"key", "request"}`` lines of an input file (400 when one is not JSON)."""
    items = []
    for raw in data.decode("utf-8", errors="replace").splitlines():
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            raise InvalidRequest("the input file is not JSONL") from None
        items.append(item if isinstance(item, dict) else {})
    return items


def _grpc_code(status: str) -> int:
    """google.rpc.Code number of a status name (JobError carries the numeric code)."""
    codes = {"INVALID_ARGUMENT": 3, "RESOURCE_EXHAUSTED": 8, "INTERNAL": 13, "UNAVAILABLE": 14}
    return codes.get(status, 2)
