"""Batch jobs for the emulator: an in-memory store, the lifecycle, and route plumbing.

Guarantees:

- A ``BatchJob`` holds the parsed requests of one batch (vendor-neutral ``EmulatorRequest``,
  or the reason a line could not be parsed). Its state depends only on time, on ``cancel`` and
  on the faults decided at creation (``batch_faults``): ``in_progress`` until
  ``config.batch_delay_s`` seconds after creation, then ``completed`` (or ``failed`` for a job
  scheduled to fail); ``expired`` once ``config.batch_expire_s`` has passed on a job still
  running; ``cancelled`` at once after ``cancel()`` on a running job.
- Requests finish evenly over ``batch_delay_s``, in input order: a job that ends early
  (expired, cancelled) delivers the answers of its first ``floor(total * elapsed / delay)``
  requests, and the rest never ran (``LineOutcome.reply is None``).
- Answers are computed once, when a job is first seen ended, with the *same* answer
  function and token counting as realtime (``answers.make_answer``), and rendered with the
  realtime vendor's ``success`` body; an unparseable line, a failing answer function or an
  injected line fault gives a per-request error (400 / 500 in the vendor's error body), the
  rest of the batch goes on. Every request of a failed job gets a 500.
- ``BatchStats`` adds ``batches_created`` (per vendor), ``batch_lines_dropped`` and
  ``batch_downloads_cut`` to the emulator's counters, so a test can assert that no duplicate
  batch was created. ``BatchRoutes.serve_results`` serves every results download, cut when
  the fault plan says so.
- ``BatchRoutes.gate`` applies the realtime pipeline's key check and fault plan to every
  batch API call (a scheduled ``"429"`` refuses the next batch call with the vendor's 429);
  batch-create calls first meet ``config.batch_submit_faults``. A refused create creates
  nothing. The rpm limiter does not apply: real batch endpoints have their own limits.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from octopipe.emulator.answers import EmulatorRequest, make_answer
from octopipe.emulator.batch_faults import DROPPED, BatchFaultPlan, JobFaults, truncate
from octopipe.emulator.config import STATUS_FAULTS, EmulatorConfig
from octopipe.emulator.faults import EmulatorStats, FaultPlan
from octopipe.emulator.vendors.base import InvalidRequest, Reply, UnknownEndpoint, Vendor

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BatchStats(EmulatorStats):
    """``EmulatorStats`` plus batches created per vendor, result lines dropped and results
    downloads cut."""

    def __init__(self) -> None:
        super().__init__()
        self._batches: Counter[str] = Counter()
        self._dropped = 0
        self._cut = 0
        self._batch_lock = threading.Lock()

    def batch_created(self, vendor: str, dropped_lines: int = 0) -> None:
        with self._batch_lock:
            self._batches[vendor] += 1
            self._dropped += dropped_lines

    def download_cut(self) -> None:
        with self._batch_lock:
            self._cut += 1

    def snapshot(self) -> dict[str, Any]:
        snap = super().snapshot()
        with self._batch_lock:
            snap["batches_created"] = dict(self._batches)
            snap["batch_lines_dropped"] = self._dropped
            snap["batch_downloads_cut"] = self._cut
        return snap


@dataclass
class LineOutcome:
    """The result of one request of a batch: a rendered success or error ``Reply``."""

    key: str
    reply: Reply | None
    """``None`` when the request never ran (batch cancelled or expired first)."""
    dropped: bool = False
    """The line is left out of every results payload (the ``dropped`` line fault)."""


@dataclass(frozen=True)
class LineCounts:
    """Outcomes of an ended job by kind, dropped lines included (vendors count them)."""

    succeeded: int = 0
    errored: int = 0
    not_run: int = 0


@dataclass
class BatchJob:
    id: str
    vendor: str
    model: str
    created_wall: float
    created_mono: float
    keys: list[str]
    requests: list[EmulatorRequest | str]
    """Parsed request, or the reason it could not be parsed."""
    metadata: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    faults: JobFaults = field(default_factory=JobFaults)
    cancelled_after_s: float | None = None
    """Seconds between creation and a cancel that caught the job running."""
    outcomes: list[LineOutcome] | None = None

    @property
    def cancelled_wall(self) -> float | None:
        if self.cancelled_after_s is None:
            return None
        return self.created_wall + self.cancelled_after_s

    @property
    def total(self) -> int:
        return len(self.requests)


class BatchStore:
    """All batch jobs and uploaded files of one emulator."""

    def __init__(self, config: EmulatorConfig, stats: EmulatorStats) -> None:
        self.config = config
        self.stats = stats
        self.jobs: dict[str, BatchJob] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.fault_plan = BatchFaultPlan(config)
        self._ids = itertools.count(1)
        self._instance = secrets.token_hex(3)
        self._lock = threading.Lock()

    def new_id(self, prefix: str) -> str:
        """Unique across emulator instances too, as a provider's ids are (a run resumed
        against a new emulator must never meet an id it already recorded)."""
        return f"{prefix}{next(self._ids):06d}emu{self._instance}"

    def create(
        self,
        vendor: str,
        model: str,
        keys: list[str],
        requests: list[EmulatorRequest | str],
        *,
        prefix: str,
        metadata: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> BatchJob:
        job_id = self.new_id(prefix)
        faults = self.fault_plan.for_new_job(job_id, len(requests))
        job = BatchJob(
            id=job_id,
            vendor=vendor,
            model=model,
            created_wall=time.time(),
            created_mono=time.monotonic(),
            keys=keys,
            requests=requests,
            metadata=dict(metadata or {}),
            extra=dict(extra or {}),
            faults=faults,
        )
        with self._lock:
            self.jobs[job.id] = job
        if isinstance(self.stats, BatchStats):
            self.stats.batch_created(vendor, dropped_lines=faults.lines.count(DROPPED))
        return job

    def get(self, job_id: str, vendor: str) -> BatchJob | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.vendor == vendor else None

    def listing(self, vendor: str) -> list[BatchJob]:
        """The vendor's jobs, newest first."""
        jobs = [j for j in self.jobs.values() if j.vendor == vendor]
        return sorted(jobs, key=lambda j: (j.created_mono, j.id), reverse=True)

    def state(self, job: BatchJob) -> str:
        """``in_progress``, ``completed``, ``failed``, ``expired`` or ``cancelled``."""
        if job.cancelled_after_s is not None:
            return "cancelled"
        elapsed = time.monotonic() - job.created_mono
        expiry = self._expiry_s() if job.faults.may_expire else None
        if expiry is not None and elapsed >= expiry:
            return "expired"
        if elapsed >= self.config.batch_delay_s:
            return "failed" if job.faults.fails else "completed"
        return "in_progress"

    def ended_at(self, job: BatchJob) -> float | None:
        """Wall-clock time the job ended, ``None`` while it runs."""
        state = self.state(job)
        if state == "in_progress":
            return None
        return job.created_wall + self._run_time(job, state)

    def cancel(self, job: BatchJob) -> None:
        if self.state(job) == "in_progress":
            job.cancelled_after_s = time.monotonic() - job.created_mono

    def finished(self, job: BatchJob) -> int:
        """How many requests (the first ones, in input order) ran before the job ended."""
        state = self.state(job)
        if state in ("completed", "failed"):
            return job.total
        if state == "in_progress" or self.config.batch_delay_s <= 0:
            return 0
        share = self._run_time(job, state) / self.config.batch_delay_s
        return min(job.total, math.floor(job.total * share + 1e-9))

    def outcomes(self, job: BatchJob, vendor: Vendor) -> list[LineOutcome]:
        """Per-request outcomes of an ended job (computed once, in input order)."""
        if job.outcomes is None:
            finished = self.finished(job)
            fails = self.state(job) == "failed"
            job.outcomes = [
                LineOutcome(
                    key,
                    self._outcome(vendor, job, i, request, fails) if i < finished else None,
                    dropped=job.faults.line(i) == DROPPED,
                )
                for i, (key, request) in enumerate(zip(job.keys, job.requests, strict=True))
            ]
        return job.outcomes

    def counts(self, job: BatchJob, vendor: Vendor) -> LineCounts:
        """Outcome counts once ended; all zero while running."""
        if self.ended_at(job) is None:
            return LineCounts()
        outcomes = self.outcomes(job, vendor)
        ok = sum(1 for o in outcomes if o.reply is not None and o.reply.status == 200)
        not_run = sum(1 for o in outcomes if o.reply is None)
        return LineCounts(succeeded=ok, errored=len(outcomes) - ok - not_run, not_run=not_run)

    def _expiry_s(self) -> float | None:
        """When running jobs expire, if they can (an expiry past the run time never bites)."""
        expire = self.config.batch_expire_s
        return expire if expire is not None and expire < self.config.batch_delay_s else None

    def _run_time(self, job: BatchJob, state: str) -> float:
        if state == "cancelled":
            return job.cancelled_after_s or 0.0
        if state == "expired":
            return self.config.batch_expire_s or 0.0
        return self.config.batch_delay_s

    def _outcome(
        self, vendor: Vendor, job: BatchJob, index: int, request: EmulatorRequest | str, fails: bool
    ) -> Reply:
        request_id = f"{job.id}_{index:06d}"
        model = request.model if isinstance(request, EmulatorRequest) else ""
        fault = "failed" if fails else job.faults.line(index)
        if fault == "failed":
            return vendor.error("500", model=model, retry_after=None, request_id=request_id)
        if fault == "400":
            return vendor.error("400", model=model, retry_after=None, request_id=request_id)
        return self._answer(vendor, request, request_id)

    def _answer(self, vendor: Vendor, request: EmulatorRequest | str, request_id: str) -> Reply:
        if isinstance(request, str):
            return vendor.error("400", model="", retry_after=None, request_id=request_id)
        try:
            answer = make_answer(
                request,
                self.config.answer_fn,
                cached_input_tokens=self.config.cached_input_tokens,
                cache_write_tokens=self.config.cache_write_tokens,
            )
        except Exception:
            log.exception("emulator answer function failed in a batch")
            return vendor.error("500", model=request.model, retry_after=None, request_id=request_id)
        return vendor.success(request, answer, request_id)


def parse_line(
    vendor: Vendor, route_endpoint: str, body: Any, match_info: Mapping[str, str]
) -> EmulatorRequest | str:
    """A batch line parsed by the realtime vendor, or why it cannot be."""
    from octopipe.emulator.vendors.base import Route

    if not isinstance(body, Mapping):
        return "the request is not a JSON object"
    try:
        return vendor.parse(Route("POST", "", route_endpoint), body, match_info)
    except (InvalidRequest, UnknownEndpoint) as exc:
        return str(exc) or "invalid request"


class BatchRoutes:
    """What batch route modules share: the store, stats, faults and response helpers."""

    def __init__(
        self,
        config: EmulatorConfig,
        stats: EmulatorStats,
        faults: FaultPlan,
        store: BatchStore,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.config = config
        self.stats = stats
        self.faults = faults
        self.store = store
        self._sleep = sleep
        self._ids = itertools.count(1)

    def request_id(self) -> str:
        return f"req_emu_b{next(self._ids):07d}"

    async def gate(
        self, vendor: Vendor, http: web.Request, endpoint: str, *, submit: bool = False
    ) -> Reply | None:
        """Count the call, check the key, apply a fault: a refusal ``Reply``, or ``None``.

        ``submit`` marks a batch-create call, which meets ``batch_submit_faults`` first."""
        self.stats.request(endpoint)
        request_id = self.request_id()
        config = self.config
        if config.api_key and vendor.presented_key(http.headers, http.query) != config.api_key:
            return vendor.error("401", model="", retry_after=None, request_id=request_id)
        fault = self.store.fault_plan.next_submit_fault() if submit else None
        if fault is None:
            fault = self.faults.next()
        if fault is not None:
            self.stats.fault(fault)
        if fault == "hang":
            await self._sleep(config.hang_max_s)
            return vendor.error("503", model="", retry_after=None, request_id=request_id)
        if fault in STATUS_FAULTS or fault == "quota":
            retry_after = config.retry_after_s if fault == "429" else None
            return vendor.error(fault, model="", retry_after=retry_after, request_id=request_id)
        return None

    async def serve_results(
        self,
        http: web.Request,
        job: BatchJob,
        file: str,
        data: bytes,
        *,
        content_type: str,
        scheduled: bool = True,
    ) -> web.StreamResponse:
        """A results file of ``job`` (``file``: which of its files), cut when the fault plan
        says this download is (``BatchFaultPlan.cut_download``), in the configured style."""
        plan = self.store.fault_plan
        if not data or not plan.cut_download(job.faults, file, scheduled=scheduled):
            return web.Response(body=data, content_type=content_type)
        if isinstance(self.stats, BatchStats):
            self.stats.download_cut()
        cut = truncate(data)
        if self.config.batch_truncate_style == "clean":
            return web.Response(body=cut, content_type=content_type)
        # "abort": announce the whole file, send part of it, drop the connection
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
        response.content_length = len(data)
        await response.prepare(http)
        await response.write(cut)
        if http.transport is not None:
            http.transport.close()
        return response

    def send(self, reply: Reply) -> web.Response:
        self.stats.response(reply.status)
        return web.json_response(dict(reply.body), status=reply.status, headers=dict(reply.headers))

    def wrap(
        self,
        vendor: Vendor,
        endpoint: str,
        handler: Callable[[web.Request], Awaitable[Reply | web.StreamResponse]],
        *,
        submit: bool = False,
    ) -> Handler:
        """An aiohttp handler: gate first, then ``handler``; ``Reply`` bodies sent as JSON.
        ``submit``: the route creates batches (see ``gate``)."""

        async def handle(http: web.Request) -> web.StreamResponse:
            refusal = await self.gate(vendor, http, endpoint, submit=submit)
            if refusal is not None:
                return self.send(refusal)
            try:
                result = await handler(http)
            except InvalidRequest:
                result = vendor.error("400", model="", retry_after=None, request_id="")
            if isinstance(result, Reply):
                return self.send(result)
            self.stats.response(result.status)
            return result

        return handle


def rfc3339(ts: float) -> str:
    """A Unix timestamp as the RFC 3339 string the vendors use (``...Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def mount_prefix(http: web.Request, mount: str) -> str:
    """``mount`` when the request came in under it, else ``""`` (the root mount)."""
    return mount if http.path.startswith(mount + "/") else ""


def not_found(vendor: Vendor, what: str) -> Reply:
    """The vendor's error body with status 404."""
    base = vendor.error("400", model="", retry_after=None, request_id="")
    body = _retitle(dict(base.body), f"{what} not found (emulated).")
    return Reply(404, body, dict(base.headers))


def _retitle(body: dict[str, Any], message: str) -> dict[str, Any]:
    error = dict(body.get("error") or {})
    error["message"] = message
    if "status" in error:  # google.rpc shape
        error["status"], error["code"] = "NOT_FOUND", 404
    if "type" in error and error.get("type") == "invalid_request_error" and "param" not in error:
        error["type"] = "not_found_error"  # Anthropic
    body["error"] = error
    return body


async def read_json(http: web.Request) -> dict[str, Any]:
    import json

    try:
        body = json.loads(await http.read() or b"null")
    except ValueError:
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body is not a JSON object")
    return body
