"""Anthropic Message Batches, as ``anthropic.AsyncAnthropic`` calls them.

Routes (relative to the Anthropic mount; the SDK's base URL has no ``/v1``):
``POST /v1/messages/batches`` ``{"requests": [{"custom_id", "params"}]}``,
``GET /v1/messages/batches/{id}``, ``GET /v1/messages/batches?limit=&after_id=&before_id=``
(newest first, cursors as the real API's), ``POST /v1/messages/batches/{id}/cancel`` and ``GET /v1/messages/batches/{id}/results``.

- ``processing_status`` is ``in_progress``, then ``ended``; a cancel gives ``ended`` at once
  (the real API passes through ``canceling``) with the requests that had not finished counted
  as ``canceled``; expiry likewise counts them ``expired``. There is no batch-level failure in
  this API: a job scheduled to fail ends with every request ``errored`` (``api_error``).
- ``results_url`` is an *absolute* URL built from the request's own host and mount (the SDK
  GETs it as given). Results are JSONL ``{"custom_id", "result": {"type": "succeeded",
  "message"} | {"type": "errored", "error": {...}} | {"type": "canceled"} | {"type":
  "expired"}}``, in reverse input order, dropped lines left out, cut in the last line for a
  truncated job. Messages carry ``usage.service_tier: "batch"``.
- Timestamps are RFC 3339 strings. There is no batch-level metadata in this API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from octopipe.emulator.batches import (
    BatchJob,
    BatchRoutes,
    Handler,
    mount_prefix,
    not_found,
    parse_line,
    read_json,
)
from octopipe.emulator.vendors.anthropic import AnthropicVendor
from octopipe.emulator.vendors.base import InvalidRequest, Reply

MOUNT = "/anthropic"
BASE = "/v1/messages/batches"


class AnthropicBatchRoutes:
    vendor_name = "anthropic"

    def __init__(self, shared: BatchRoutes) -> None:
        self.shared = shared
        self.store = shared.store
        self.vendor = AnthropicVendor()

    def routes(self) -> list[tuple[str, str, Handler]]:
        wrap = self.shared.wrap
        v = self.vendor
        return [
            ("POST", BASE, wrap(v, "anthropic.batches.create", self.create, submit=True)),
            ("GET", BASE, wrap(v, "anthropic.batches.list", self.list_batches)),
            ("GET", BASE + "/{batch_id}", wrap(v, "anthropic.batches.retrieve", self.retrieve)),
            ("POST", BASE + "/{batch_id}/cancel", wrap(v, "anthropic.batches.cancel", self.cancel)),
            (
                "GET",
                BASE + "/{batch_id}/results",
                wrap(v, "anthropic.batches.results", self.results),
            ),
        ]

    async def create(self, http: web.Request) -> Reply:
        body = await read_json(http)
        items = body.get("requests")
        if not isinstance(items, list) or not items:
            raise InvalidRequest("'requests' must be a non-empty list")
        keys: list[str] = []
        seen: set[str] = set()
        requests: list[Any] = []
        model = ""
        for item in items:
            key = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(key, str) or key in seen:
                raise InvalidRequest("every request needs a unique custom_id")
            keys.append(key)
            seen.add(key)
            parsed = parse_line(self.vendor, "anthropic.messages", item.get("params"), {})
            requests.append(parsed)
            if not isinstance(parsed, str):
                model = model or parsed.model
        job = self.store.create(self.vendor_name, model, keys, requests, prefix="msgbatch_")
        return Reply(200, self._batch_object(job, http))

    async def list_batches(self, http: web.Request) -> Reply:
        """Newest first, ``limit`` (1-1000, default 20) per page; ``after_id`` gives the page
        just after that batch (older ones), ``before_id`` the page just before it (newer)."""
        jobs = self.store.listing(self.vendor_name)
        ids = [j.id for j in jobs]
        limit = max(1, min(1000, int(http.query.get("limit", "20") or 20)))
        after, before = http.query.get("after_id"), http.query.get("before_id")
        if before:
            newer = jobs[: ids.index(before)] if before in ids else []
            page, more = newer[-limit:], len(newer) > limit
        else:
            if after:
                jobs = jobs[ids.index(after) + 1 :] if after in ids else []
            page, more = jobs[:limit], len(jobs) > limit
        return Reply(
            200,
            {
                "data": [self._batch_object(j, http) for j in page],
                "has_more": more,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            },
        )

    async def retrieve(self, http: web.Request) -> Reply:
        job = self._job(http)
        if job is None:
            return not_found(self.vendor, "batch")
        return Reply(200, self._batch_object(job, http))

    async def cancel(self, http: web.Request) -> Reply:
        job = self._job(http)
        if job is None:
            return not_found(self.vendor, "batch")
        self.store.cancel(job)
        return Reply(200, self._batch_object(job, http))

    async def results(self, http: web.Request) -> Reply | web.StreamResponse:
        job = self._job(http)
        if job is None:
            return not_found(self.vendor, "batch")
        if self.store.ended_at(job) is None:
            return Reply(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "Batch is still in progress.",
                    },
                },
            )
        not_run = "expired" if self.store.state(job) == "expired" else "canceled"
        lines = []
        for outcome in self.store.outcomes(job, self.vendor):
            result: dict[str, Any]
            if outcome.dropped:
                continue
            if outcome.reply is None:
                result = {"type": not_run}
            elif outcome.reply.status == 200:
                message = json.loads(json.dumps(dict(outcome.reply.body)))
                message.setdefault("usage", {})["service_tier"] = "batch"
                result = {"type": "succeeded", "message": message}
            else:
                result = {"type": "errored", "error": dict(outcome.reply.body)}
            lines.append(json.dumps({"custom_id": outcome.key, "result": result}))
        lines.reverse()
        data = ("\n".join(lines) + "\n").encode() if lines else b""
        return await self.shared.serve_results(
            http, job, "results", data, content_type="application/binary"
        )

    def _job(self, http: web.Request) -> BatchJob | None:
        return self.store.get(http.match_info["batch_id"], self.vendor_name)

    def _batch_object(self, job: BatchJob, http: web.Request) -> dict[str, Any]:
        state = self.store.state(job)
        ended = self.store.ended_at(job)
        counts = self.store.counts(job, self.vendor)
        expired = state == "expired"
        processing = job.total if ended is None else 0
        origin = f"{http.scheme}://{http.host}{mount_prefix(http, MOUNT)}"
        return {
            "id": job.id,
            "type": "message_batch",
            "processing_status": "ended" if ended is not None else "in_progress",
            "request_counts": {
                "processing": processing,
                "succeeded": counts.succeeded,
                "errored": counts.errored,
                "canceled": 0 if expired else counts.not_run,
                "expired": counts.not_run if expired else 0,
            },
            "created_at": _rfc3339(job.created_wall),
            "expires_at": _rfc3339(job.created_wall + 86400),
            "ended_at": _rfc3339(ended) if ended is not None else None,
            "cancel_initiated_at": (
                _rfc3339(job.cancelled_wall) if job.cancelled_wall is not None else None
            ),
            "archived_at": None,
            "results_url": f"{origin}{BASE}/{job.id}/results" if ended is not None else None,
        }


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
