"""Gemini Batch API (Developer API, inline requests), as ``google-genai`` calls it.

Routes (relative to the Gemini mount; the SDK adds the API version):

- ``POST /{v}/models/{model}:batchGenerateContent`` with ``{"batch": {"displayName",
  "inputConfig": {"requests": {"requests": [{"request", "metadata"}]}}}}``;
- ``GET /{v}/batches/{id}``, ``POST /{v}/batches/{id}:cancel`` (empty object),
  ``GET /{v}/batches?pageSize=&pageToken=`` (``{"operations", "nextPageToken"}``, newest
  first).

Create, get and list answer with the long-running ``Operation``: ``{"name": "batches/…",
"metadata": {"@type", "model", "displayName", "state": "BATCH_STATE_…", "createTime",
"updateTime", "endTime", "batchStats" (int64 strings), "output"}, "done", "response"}``. Once
succeeded, ``output.inlinedResponses.inlinedResponses`` holds, *in input order*, ``{"response":
GenerateContentResponse, "metadata"}`` or ``{"error": {code, message, status}, "metadata"}``,
the request's ``metadata`` echoed back. A cancelled job has state ``BATCH_STATE_CANCELLED``
and no output.

At the root mount only ``v1beta`` is served: with ``v1``, ``/v1/batches/{id}`` would collide
with OpenAI's path (use the ``/gemini`` mount, which serves both versions). File-based input
(``inputConfig.fileName``) is not emulated and answered 400.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from octopipe.providers.emulator.batches import (
    BatchJob,
    BatchRoutes,
    Handler,
    not_found,
    parse_line,
    read_json,
)
from octopipe.providers.emulator.vendors.base import InvalidRequest, Reply
from octopipe.providers.emulator.vendors.gemini import GeminiVendor

TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta."
STATES = {"in_progress": "BATCH_STATE_RUNNING", "completed": "BATCH_STATE_SUCCEEDED"}


class GeminiBatchRoutes:
    vendor_name = "gemini"

    def __init__(self, shared: BatchRoutes) -> None:
        self.shared = shared
        self.store = shared.store
        self.vendor = GeminiVendor()

    def routes(self, *, root: bool = False) -> list[tuple[str, str, Handler]]:
        wrap = self.shared.wrap
        v = self.vendor
        version = "{version:v1beta}" if root else "{version:v1beta|v1}"
        batch = f"/{version}/batches/{{batch_id:[^/:]+}}"
        return [
            (
                "POST",
                f"/{version}/models/{{model:[^/:]+}}:batchGenerateContent",
                wrap(v, "gemini.batches.create", self.create),
            ),
            ("GET", f"/{version}/batches", wrap(v, "gemini.batches.list", self.list_batches)),
            ("GET", batch, wrap(v, "gemini.batches.get", self.get)),
            ("POST", batch + ":cancel", wrap(v, "gemini.batches.cancel", self.cancel)),
        ]

    async def create(self, http: web.Request) -> Reply:
        body = await read_json(http)
        batch = body.get("batch")
        if not isinstance(batch, dict):
            raise InvalidRequest("'batch' is required")
        config = batch.get("inputConfig") or {}
        items = (config.get("requests") or {}).get("requests") if isinstance(config, dict) else None
        if not isinstance(items, list) or not items:
            raise InvalidRequest("only inline requests (inputConfig.requests) are emulated")
        model = http.match_info["model"]
        match = {"model_action": f"{model}:generateContent"}
        keys: list[str] = []
        requests: list[Any] = []
        metas: list[dict[str, str]] = []
        for i, item in enumerate(items):
            item = item if isinstance(item, dict) else {}
            raw_meta = item.get("metadata")
            meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
            metas.append({str(k): str(val) for k, val in meta.items()})
            keys.append(str(meta.get("key", i)))
            requests.append(
                parse_line(self.vendor, "gemini.generateContent", item.get("request"), match)
            )
        job = self.store.create(
            self.vendor_name,
            model,
            keys,
            requests,
            prefix="gbatch",
            extra={"display_name": str(batch.get("displayName") or ""), "line_metadata": metas},
        )
        return Reply(200, self._operation(job))

    async def list_batches(self, http: web.Request) -> Reply:
        jobs = self.store.listing(self.vendor_name)
        start = int(http.query.get("pageToken") or 0)
        size = max(1, min(1000, int(http.query.get("pageSize") or 50)))
        page = jobs[start : start + size]
        body: dict[str, Any] = {"operations": [self._operation(j) for j in page]}
        if start + size < len(jobs):
            body["nextPageToken"] = str(start + size)
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

    def _operation(self, job: BatchJob) -> dict[str, Any]:
        state = self.store.state(job)
        ended = self.store.ended_at(job)
        ok, failed = self.store.counts(job, self.vendor)
        meta: dict[str, Any] = {
            "@type": TYPE + "GenerateContentBatch",
            "model": f"models/{job.model}",
            "displayName": job.extra.get("display_name", ""),
            "state": STATES.get(state, "BATCH_STATE_CANCELLED"),
            "createTime": _timestamp(job.created_wall),
            "updateTime": _timestamp(ended if ended is not None else job.created_wall),
            "batchStats": {
                "requestCount": str(job.total),
                "successfulRequestCount": str(ok),
                "failedRequestCount": str(failed),
                "pendingRequestCount": str(job.total if ended is None else 0),
            },
        }
        operation: dict[str, Any] = {"name": f"batches/{job.id}", "metadata": meta}
        if ended is not None:
            meta["endTime"] = _timestamp(ended)
            operation["done"] = True
        if state == "completed":
            output = {"inlinedResponses": {"inlinedResponses": self._inlined(job)}}
            meta["output"] = output
            operation["response"] = {"@type": TYPE + "GenerateContentBatchOutput", **output}
        return operation

    def _inlined(self, job: BatchJob) -> list[dict[str, Any]]:
        metas: list[dict[str, str]] = job.extra.get("line_metadata", [])
        responses = []
        for outcome, meta in zip(self.store.outcomes(job, self.vendor), metas, strict=True):
            item: dict[str, Any] = {"metadata": meta} if meta else {}
            if outcome.reply is not None and outcome.reply.status == 200:
                item["response"] = dict(outcome.reply.body)
            elif outcome.reply is not None:
                error = dict(outcome.reply.body).get("error") or {}
                item["error"] = {
                    "code": _grpc_code(str(error.get("status", ""))),
                    "message": error.get("message", ""),
                }
            responses.append(item)
        return responses


def _grpc_code(status: str) -> int:
    """google.rpc.Code number of a status name (JobError carries the numeric code)."""
    codes = {"INVALID_ARGUMENT": 3, "RESOURCE_EXHAUSTED": 8, "INTERNAL": 13, "UNAVAILABLE": 14}
    return codes.get(status, 2)


def _timestamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
