"""Batch execution of LLM steps: pack, record the intent, submit, poll, collect, retry.

Each pass of the runner's loop calls ``pump``, which never blocks on the network: provider
calls run as one asyncio task per batch (submit, poll, cancel or collect), and ``pump`` starts
the next one when a batch is due. The ledger is the only memory that matters; everything kept
here (poll timers, backoffs) is rebuilt harmlessly after a restart.

The life of a batch (``core.states`` has the transitions):

1. *Pack*: claim pending units of a step, render their prompts, keep as many as the batch limits
   allow (``batch_packing``) and release the rest. A step's units are submitted as soon as a
   full batch is pending, or when nothing upstream can add more, or after waiting ``linger``.
2. *Intent*: the batch (local id, units, content hash, estimated cost) is committed with a
   durable commit *before* the provider is called.
3. *Submit*: on success the provider's id is recorded at once. A 429 abandons the intent (its
   units go back to pending, no attempt used) and backs off the step; auth or quota errors
   pause the run with the reason; a bad request fails the units; a timeout or 5xx leaves the
   intent to be *reconciled*.
4. *Reconcile* (at start-up and after an uncertain submit): the provider's batch list is
   searched for the intent's id in the batch metadata, paging back to batches created before
   the intent (less ``CLOCK_SLACK_S``), however many newer batches the account holds: found,
   the batch is adopted; not found, the intent is abandoned and its units requeued. No
   orphan, no duplicate.
5. *Poll* every ``api.poll_interval_seconds``, stretching while nothing changes (up to
   ``POLL_STRETCH`` times), with jitter; a batch older than ``api.batch.deadline_hours`` is
   cancelled, and its unfinished units resubmitted (or run in realtime if
   ``api.batch.fallback_to_realtime``).
6. *Collect* (``batch_collect``): results are stored before the batch is marked collected;
   a download that came back incomplete is fetched again (with backoff, a bounded number of
   times, then the run pauses) before any line counts as missing; expired and cancelled
   batches keep their finished lines; missing lines are retried; units that failed
   validation with budget left go into later batches of only those units.

Money: the cost cap (``--max-cost`` / ``api.realtime.cost_cap_usd``) counts what was spent plus
the estimate of every batch still at the provider, and a batch that would cross it is not
submitted. Estimates are replaced by actual usage, at batch prices, as lines are collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from octopipe.core.amounts import format_usd
from octopipe.core.config_models import MAX_POLL_INTERVAL_S
from octopipe.core.registry import Registry, load_registry
from octopipe.core.states import BatchEvent, BatchState
from octopipe.engine.batch_collect import (
    DOWNLOAD_TRIES,
    LOST,
    BatchRecorder,
    Tally,
    after_incomplete,
    run_tag,
)
from octopipe.engine.batch_packing import CostModel, batch_limits
from octopipe.engine.batch_submit import RECONCILE_AFTER_S, SubmitMixin
from octopipe.engine.cost_budget import CostBudget
from octopipe.engine.routes import StepRoute, resolve_routes
from octopipe.engine.runlog import Trace
from octopipe.engine.runner import LLMExecutor, RunContext
from octopipe.errors import IncompleteResults, OctopipeError, ProviderError, UsageError
from octopipe.providers.batch_base import (
    INTENT_KEY,
    BatchHandle,
    BatchProvider,
    BatchStatus,
)
from octopipe.store.records import BatchRow

LIVE = (
    BatchState.INTENT,
    BatchState.SUBMITTED,
    BatchState.COMPLETED,
    BatchState.EXPIRED,
    BatchState.CANCELLED,
    BatchState.FAILED,
)
BATCH_PROVIDERS = frozenset({"openai", "anthropic", "gemini", "fake"})
ENDED = (BatchState.COMPLETED, BatchState.EXPIRED, BatchState.CANCELLED, BatchState.FAILED)
POLL_STRETCH = 8  # a quiet batch is polled at most this many intervals apart
POLL_MAX_S = 600.0
JITTER = 0.1
RECONCILE_MISSES = 1  # lookups that may miss before an intent is abandoned (then one more)
CLOCK_SLACK_S = 3600.0
"""The search for an intent's batch looks back this far before the intent was recorded: the
provider stamps batches with its own clock, which may be behind ours."""
HEARTBEAT_S = 30.0
_TERMINAL_EVENTS = {
    "completed": BatchEvent.PROVIDER_DONE,
    "expired": BatchEvent.PROVIDER_EXPIRED,
    "cancelled": BatchEvent.PROVIDER_CANCELLED,
    "failed": BatchEvent.PROVIDER_FAILED,
}


@dataclass(frozen=True)
class BatchOptions:
    """Run-time choices for batch mode (CLI flags over config over registry defaults)."""

    provider: str | None = None
    model: str | None = None
    timeout_s: float | None = None
    max_attempts: int | None = None
    submit: bool = True
    """False: only follow and collect batches already submitted (a run switched to realtime)."""
    linger_s: float | None = None
    """How long a partial batch waits for more units from upstream steps (default: the poll
    interval, at most 60 s)."""
    price_as: dict[str, str] = field(default_factory=dict)
    poll_interval_s: float | None = None
    """Overrides ``api.poll_interval_seconds``; more than 0, at most ``MAX_POLL_INTERVAL_S``."""

    def __post_init__(self) -> None:
        poll = self.poll_interval_s
        if poll is not None and not (math.isfinite(poll) and 0 < poll <= MAX_POLL_INTERVAL_S):
            raise UsageError(
                f"a batch poll interval must be more than 0 and at most "
                f"{MAX_POLL_INTERVAL_S:.0f} seconds, not {poll:g}"
            )


@dataclass
class _Timer:
    due: float = 0.0
    every: float = 0.0
    last_done: int = -1
    last_status: str = ""
    cancel_sent: bool = False
    misses: int = 0  # reconcile lookups that did not find the intent's batch
    downloads: int = 0  # incomplete downloads of the batch's results in a row
    last_cut: tuple[int, ...] | None = None  # the signature of the last incomplete one
    recorded: int = 0  # lines those incomplete downloads recorded


class BatchExecutor(SubmitMixin):
    def __init__(
        self,
        ctx: RunContext,
        options: BatchOptions,
        client_for: Callable[[str], BatchProvider],
        registry: Registry | None = None,
        fallback: Callable[[int], None] | None = None,
        *,
        budget: CostBudget,
    ) -> None:
        self.ctx = ctx
        self.budget = budget
        self.options = options
        self.client_for = client_for
        self.registry = registry or load_registry()
        self.fallback = fallback
        config = ctx.compiled.pipeline.config
        self.api = config.api
        self.max_attempts = options.max_attempts or config.processing.validation_retry.max_attempts
        self.poll_s = options.poll_interval_s or config.api.poll_interval_seconds
        self.linger_s = options.linger_s if options.linger_s is not None else min(self.poll_s, 60.0)
        self.costs = CostModel(self.registry)
        info = ctx.ledger.run_info()
        self.tag = run_tag(info.name, info.created_at)
        routes = resolve_routes(
            ctx.compiled, self.registry, options.provider, options.model, options.price_as
        )
        self.routes = {r.index: r for r in routes if r is not None}
        if options.submit:
            for route in self.routes.values():
                if route.provider not in BATCH_PROVIDERS:
                    raise UsageError(
                        f"step {route.cstep.name!r}: provider {route.provider!r} has no batch "
                        "API; run it with --realtime, or use openai, anthropic or gemini"
                    )
        self.limits = {
            i: batch_limits(
                self.registry, r.provider, r.model, config.api, config.processing.chunk_size
            )
            for i, r in self.routes.items()
        }
        self.clients: dict[str, BatchProvider] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.timers: dict[str, _Timer] = {}
        self.step_backoff: dict[int, tuple[float, float]] = {}  # step -> (until, last delay)
        self.waiting_since: dict[int, float] = {}
        self.paused_steps: set[int] = set()  # fell back to realtime after a deadline
        self.live: list[BatchRow] = []
        self.submitting: dict[str, int] = {}  # batches on the wire -> bytes of requests
        self.reconciling: set[str] = set()
        self.retries_waiting: dict[int, bool] = {}
        self._budget_blocked: tuple[float, int] | None = None
        self._fresh_estimates = 0.0  # batches created since ``live`` was read
        self.trace = Trace(ctx.paths.trace)
        self._token = secrets.token_hex(4)
        self._seq = len(ctx.ledger.batches()) + 1
        self._last_heartbeat = time.monotonic()
        self._rng = random.Random()
        self.deadline = time.monotonic() + options.timeout_s if options.timeout_s else None

    # --- the executor protocol ------------------------------------------------------------------

    async def pump(self) -> bool:
        progressed = self._reap()
        self.live = self.ctx.ledger.batches(*LIVE)
        self._fresh_estimates = 0.0
        self.budget.hold_open_batches(sum(b.estimate_usd or 0.0 for b in self.live))
        now = time.monotonic()
        for row in self.live:
            if row.local_id not in self.tasks and not self.ctx.stop_requested():
                progressed |= self._schedule(row, now)
        if self._check_limits():
            return progressed
        if self.options.submit and not self.ctx.stop_requested():
            progressed |= self._submit_due(now)
        self._heartbeat(now)
        if not progressed and self.tasks:
            await asyncio.wait(
                list(self.tasks.values()), timeout=0.05, return_when=asyncio.FIRST_COMPLETED
            )
            progressed = self._reap()
        return progressed

    def busy(self) -> bool:
        return bool(self.tasks) or bool(self.live)

    async def stop(self) -> None:
        """Stop following batches: submissions already on the wire finish (so their ids are
        recorded); polls and collections are cancelled (a collection resumes where it stopped).
        Batches stay at the provider; the next start picks them up."""
        for local_id, task in list(self.tasks.items()):
            if local_id not in self.submitting:
                task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=120)
        self._reap()
        self.trace.close()
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()

    # --- what is due ---------------------------------------------------------------------------

    def _schedule(self, row: BatchRow, now: float) -> bool:
        timer = self.timers.setdefault(row.local_id, _Timer(every=self.poll_s))
        if now < timer.due:
            return False
        if row.state in ENDED:
            self._start(row.local_id, self._collect(row))
            return True
        if row.state is BatchState.INTENT:
            # One at a time, and never while a submit is on the wire: an intent of a provider
            # without batch metadata is matched by size and time, and two matches running at
            # once (or one racing a submit) could both pick the same batch.
            if self.submitting or any(r in self.tasks for r in self.reconciling):
                return False
            self.reconciling.add(row.local_id)
            self._start(row.local_id, self._reconcile(row))
        elif row.state is BatchState.SUBMITTED:
            if self._past_deadline(row) and not timer.cancel_sent:
                timer.cancel_sent = True
                self._start(row.local_id, self._cancel_stuck(row))
            else:
                self._start(row.local_id, self._poll(row, timer))
        return False

    def _submit_due(self, now: float) -> bool:
        progressed = False
        cap = self.api.max_inflight_batches
        inflight = len(self.live)
        for index, route in self.routes.items():
            if index in self.paused_steps:
                continue
            limits = self.limits[index]
            while inflight < cap and not self.ctx.stop_requested():
                if self.submitting or self.reconciling:
                    # One submit on the wire at a time: a 50,000-request batch costs ~200 MB
                    # while it is built and sent, and an intent being reconciled must not
                    # race a new batch of the same size.
                    return progressed
                if now < self.step_backoff.get(index, (0.0, 0.0))[0]:
                    break
                pending = self.ctx.ledger.pending_count(index, limits.max_requests)
                if not pending:
                    self.waiting_since.pop(index, None)
                    break
                if pending < limits.max_requests and self.ctx.ledger.live_before(index):
                    since = self.waiting_since.setdefault(index, now)
                    if now - since < self.linger_s:
                        break
                if not self._pack_and_submit(route):
                    break
                self.waiting_since.pop(index, None)
                inflight += 1
                progressed = True
        return progressed

    # --- reconcile, poll, cancel --------------------------------------------------------------

    async def _reconcile(self, row: BatchRow) -> None:
        client = self._client(row.provider)
        try:
            since = _timestamp(row.created_at) - CLOCK_SLACK_S
            found = await client.find(INTENT_KEY, row.local_id, since=since)
        except UsageError:
            found = await _match_unrecorded(client, row, self._known_ids())
        except ProviderError as exc:
            self.timers[row.local_id] = _Timer(due=time.monotonic() + RECONCILE_AFTER_S)
            self.ctx.log.write("RECONCILE", f"batch {row.local_id}: {exc.message}; will retry")
            return
        timer = self.timers.setdefault(row.local_id, _Timer(every=self.poll_s))
        if not found and timer.misses < RECONCILE_MISSES:
            # A provider's list may lag behind a batch just created: look again before
            # concluding the intent never reached it (and resubmitting its units).
            timer.misses += 1
            timer.due = time.monotonic() + RECONCILE_AFTER_S
            return
        if not found:
            self.ctx.ledger.advance_batch(
                row.local_id, BatchEvent.RECONCILE_MISSING, error="never reached the provider"
            )
            self.retries_waiting[row.step_idx] = True
            self.ctx.log.write(
                "RECONCILE", f"batch {row.local_id} never reached the provider; units requeued"
            )
            return
        handle = found[0]
        self.ctx.ledger.advance_batch(
            row.local_id,
            BatchEvent.RECONCILE_FOUND,
            provider_batch_id=handle.provider_batch_id,
            provider_status="submitted",
        )
        self.timers[row.local_id] = _Timer(due=time.monotonic(), every=self.poll_s)
        self.ctx.log.write(
            "RECONCILE", f"batch {row.local_id} found at the provider: {handle.provider_batch_id}"
        )

    def _known_ids(self) -> set[str]:
        return {b.provider_batch_id for b in self.ctx.ledger.batches() if b.provider_batch_id}

    async def _poll(self, row: BatchRow, timer: _Timer) -> None:
        client = self._client(row.provider)
        t0 = time.monotonic()
        try:
            status = await client.poll(_handle(row))
        except ProviderError as exc:
            self._trace("poll", row, t0, status=exc.status or type(exc).__name__)
            if exc.status == 404:
                self._lost(row)
                return
            if exc.fatal_for_run:
                self.ctx.request_stop(exc.message, exit_code=exc.exit_code)
                return
            timer.every = min(timer.every * 2, POLL_MAX_S)
            timer.due = time.monotonic() + timer.every
            return
        self._trace("poll", row, t0, status=status.state, done=status.done, total=status.total)
        note = _describe(status)
        if status.terminal:
            event = _TERMINAL_EVENTS[status.state]
            self.ctx.ledger.advance_batch(
                row.local_id, event, provider_status=note, error=status.error
            )
            self.ctx.log.write("POLL", f"batch {row.local_id}: {note}")
            return
        if note != timer.last_status:
            self.ctx.ledger.note_batch_status(row.local_id, note)
        if status.done == timer.last_done:  # nothing moved: look less often
            timer.every = min(timer.every * 1.5, self.poll_s * POLL_STRETCH, POLL_MAX_S)
        else:
            timer.every = self.poll_s
        timer.last_done, timer.last_status = status.done, note
        spread = 1 + self._rng.uniform(-JITTER, JITTER)
        timer.due = time.monotonic() + max(self.poll_s, timer.every) * spread

    def _lost(self, row: BatchRow) -> None:
        self.ctx.ledger.advance_batch(
            row.local_id,
            BatchEvent.PROVIDER_FAILED,
            provider_status=LOST,
            error="the provider no longer knows this batch (deleted or another account)",
        )
        self.ctx.log.write("POLL", f"batch {row.local_id}: not found at the provider")

    def _past_deadline(self, row: BatchRow) -> bool:
        from datetime import UTC, datetime

        if row.submitted_at is None:
            return False
        submitted = datetime.fromisoformat(row.submitted_at.replace("Z", "+00:00"))
        age_h = (datetime.now(UTC) - submitted).total_seconds() / 3600
        return age_h > self.api.batch.deadline_hours

    async def _cancel_stuck(self, row: BatchRow) -> None:
        client = self._client(row.provider)
        hours = self.api.batch.deadline_hours
        self.ctx.log.write(
            "CANCEL", f"batch {row.local_id} still running after {hours:g} h; cancelling it"
        )
        with contextlib.suppress(ProviderError):
            await client.cancel(_handle(row))
        if self.api.batch.fallback_to_realtime and self.fallback is not None:
            self.paused_steps.add(row.step_idx)
            self.fallback(row.step_idx)
            self.ctx.log.write(
                "FALLBACK",
                f"step {self.routes[row.step_idx].cstep.name}: the rest runs in realtime",
            )
        self.timers[row.local_id].due = time.monotonic()  # poll now; cancel_sent stays set

    # --- collect ---------------------------------------------------------------------------------

    async def _collect(self, row: BatchRow) -> None:
        route = self.routes.get(row.step_idx)
        if route is None or route.provider != row.provider or route.model != row.model:
            route = _route_of(self.ctx, self.registry, row)
        recorder = BatchRecorder(
            self.ctx, route, self.registry, self.max_attempts, self.costs, self.tag
        )
        tally = Tally()
        try:
            await self._collect_into(row, recorder, tally)
        finally:
            self.budget.charge(tally.cost_usd)  # what was recorded, even if collection stopped

    async def _collect_into(self, row: BatchRow, recorder: BatchRecorder, tally: Tally) -> None:
        client = self._client(row.provider)
        t0 = time.monotonic()
        if row.provider_batch_id is not None:
            buffer = []
            try:
                async for line in client.collect(_handle(row)):
                    buffer.append(line)
                    if len(buffer) >= 2_000:
                        recorder.record(row, buffer, tally)
                        buffer = []
                        await asyncio.sleep(0)
            except IncompleteResults as exc:
                recorder.record(row, buffer, tally)
                if not self._take_as_complete(row, exc, tally):
                    return  # the batch stays open: its other units are still in flight
                buffer = []
            except ProviderError as exc:
                if exc.fatal_for_run:  # the results are fine; our access is not
                    recorder.record(row, buffer, tally)
                    self.ctx.log.write("PAUSE", f"{row.provider}: {exc.message}")
                    self.ctx.request_stop(exc.message, exit_code=exc.exit_code)
                    return
                if exc.status != 404:
                    self.ctx.log.write(
                        "COLLECT", f"batch {row.local_id}: {exc.message}; will try again"
                    )
                    recorder.record(row, buffer, tally)
                    self.timers[row.local_id] = _Timer(due=time.monotonic() + self.poll_s)
                    return
                # Results deleted (OpenAI and Anthropic keep them for a limited time) or the
                # batch gone: the units are sent again, without charging them an attempt.
                tally.lost = True
                self.ctx.log.write(
                    "COLLECT", f"batch {row.local_id}: results no longer available; resending"
                )
            recorder.record(row, buffer, tally)
        final = recorder.finish(row, tally)
        if tally.released_any(row.state):
            self.retries_waiting[row.step_idx] = True  # units with an attempt may be pending
        if tally.stop_reason:
            self.ctx.log.write("PAUSE", f"{row.provider}: {tally.stop_reason}")
            self.ctx.request_stop(tally.stop_reason)
        if row.state is BatchState.FAILED:  # resubmit, but not at once
            self._back_off(row.step_idx, None)
        self._trace("collect", row, t0, status=row.state.value, valid=tally.valid)
        timer = self.timers.get(row.local_id)
        earlier = (
            f" (and {timer.recorded:,} from earlier downloads)" if timer and timer.recorded else ""
        )
        self.ctx.log.write(
            "COLLECT",
            f"batch {row.local_id} ({row.state.value}): {tally.line()}{earlier}; "
            f"cost {format_usd(final.actual_usd if final.actual_usd is not None else None)}",
        )

    def _take_as_complete(self, row: BatchRow, exc: IncompleteResults, tally: Tally) -> bool:
        """After an incomplete download (``batch_collect.after_incomplete``): schedule the
        next download or pause the run (False), or take the results as complete (True)."""
        timer = self.timers.setdefault(row.local_id, _Timer(every=self.poll_s))
        timer.downloads += 1
        decision = after_incomplete(exc, timer.downloads, timer.last_cut, self.poll_s)
        timer.last_cut = exc.signature
        if tally.stop_reason:  # a line said the account cannot be used
            self.ctx.log.write("PAUSE", f"{row.provider}: {tally.stop_reason}")
            self.ctx.request_stop(tally.stop_reason)
        timer.recorded += tally.valid + tally.failed
        recorded = f"{tally.valid + tally.failed:,} lines recorded"
        if decision.delay_s is not None:
            timer.due = time.monotonic() + decision.delay_s
            self.ctx.log.write(
                "COLLECT",
                f"batch {row.local_id}: {exc.message}; {recorded}, fetching them again in "
                f"{decision.delay_s:.2g} s (download {timer.downloads + 1} of {DOWNLOAD_TRIES})",
            )
            return False
        if decision.pause is not None:
            reason = f"batch {row.local_id}: {decision.pause}"
            self.ctx.log.write("PAUSE", reason)
            self.ctx.request_stop(reason)
            return False
        self.ctx.log.write(
            "COLLECT",
            f"batch {row.local_id}: {exc.message}, the same twice: taken as complete",
        )
        return True

    # --- bookkeeping ----------------------------------------------------------------------------

    def _start(self, key: str, coro: Any) -> None:
        self.tasks[key] = asyncio.create_task(coro)

    def _reap(self) -> bool:
        done = [k for k, t in self.tasks.items() if t.done()]
        for key in done:
            task = self.tasks.pop(key)
            if task.cancelled():
                continue
            self.reconciling.discard(key)
            exc = task.exception()
            if exc is None:
                continue
            self.ctx.log.write("ERROR", f"batch {key}: {type(exc).__name__}: {exc}")
            if isinstance(exc, ProviderError) and not exc.fatal_for_run:
                timer = self.timers.setdefault(key, _Timer(every=self.poll_s))
                timer.every = min(max(timer.every, self.poll_s) * 2, POLL_MAX_S)
                timer.due = time.monotonic() + timer.every  # try again later, not at once
            elif isinstance(exc, OctopipeError):  # no key, auth, quota, a provider not set up
                self.ctx.request_stop(str(exc), exit_code=exc.exit_code)
            else:
                raise exc
        return bool(done)

    def _client(self, provider: str) -> BatchProvider:
        if provider not in self.clients:
            self.clients[provider] = self.client_for(provider)
        return self.clients[provider]

    def _new_timer(self, **fields: Any) -> _Timer:
        return _Timer(**fields)

    def _check_limits(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.ctx.request_stop("time limit reached")
            return True
        return False

    def _heartbeat(self, now: float) -> None:
        if not self.live or now - self._last_heartbeat < HEARTBEAT_S:
            return
        self._last_heartbeat = now
        waiting = self.live
        due = [
            self.timers[b.local_id].due
            for b in waiting
            if b.state is BatchState.SUBMITTED and b.local_id in self.timers
        ]
        parts = [f"{b.local_id} {b.provider_status or b.state.value}" for b in waiting[:5]]
        more = f" (+{len(waiting) - 5} more)" if len(waiting) > 5 else ""
        next_poll = f"; next poll in {max(0, min(due) - now):.0f} s" if due else ""
        self.ctx.log.write(
            "HEARTBEAT",
            f"{len(waiting)} open batch(es): {', '.join(parts)}{more}{next_poll}; "
            f"spent {format_usd(self.budget.spent)}",
        )

    def batch_summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.live:
            out[b.state.value] = out.get(b.state.value, 0) + 1
        return out

    def _trace(self, op: str, row: BatchRow, t0: float, **fields: Any) -> None:
        self.trace.write(
            kind="batch",
            op=op,
            batch=row.local_id,
            provider=row.provider,
            model=row.model,
            latency_ms=round((time.monotonic() - t0) * 1000),
            **fields,
        )


def _handle(row: BatchRow) -> BatchHandle:
    assert row.provider_batch_id is not None
    return BatchHandle(row.provider, row.provider_batch_id, 0.0)


def _describe(status: BatchStatus) -> str:
    text = f"{status.state} {status.done:,}/{status.total:,}"
    return text + (f" ({status.failed:,} failed)" if status.failed else "")


def _route_of(ctx: RunContext, registry: Registry, row: BatchRow) -> StepRoute:
    """The route a batch was submitted on (a run resumed with another provider or model still
    checks and prices that batch's answers as what they are)."""
    routes = resolve_routes(ctx.compiled, registry, row.provider, row.model, {})
    route = routes[row.step_idx]
    assert route is not None
    return route


async def _match_unrecorded(
    client: BatchProvider, row: BatchRow, known: set[str]
) -> list[BatchHandle]:
    """For providers whose batches carry no metadata: the batch with the intent's number of
    requests, unknown to the ledger, created nearest the intent (see ``BatchProvider.recent``;
    every batch since the intent less ``CLOCK_SLACK_S`` is looked at)."""
    recent = getattr(client, "recent", None)
    if recent is None:
        return []
    at = _timestamp(row.created_at)
    candidates = [
        h
        for h, total in await recent(at - CLOCK_SLACK_S)
        if h.provider_batch_id not in known and total == row.n_units
    ]
    # the batch created nearest the intent: ours was created right after it was recorded
    return sorted(candidates, key=lambda h: abs(h.created_at - at))[:1]


def _timestamp(iso: str) -> float:
    """A ledger timestamp (ISO 8601, UTC) as Unix seconds."""
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


__all__ = ["BatchExecutor", "BatchOptions", "LLMExecutor"]
