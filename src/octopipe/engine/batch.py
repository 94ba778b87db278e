"""Batch execution of LLM steps: pack, record the intent, submit, poll, collect, retry.

Each pass of the runner's loop calls ``pump``, which never blocks on the network: provider
calls run as one asyncio task per batch (submit, poll, cancel or collect), and ``pump`` starts
the next one when a batch is due. What is due is decided by ``engine.batch_plan`` (pure: the
open batches, the timers and ``now`` in, actions out); this module performs the actions
through the adapters, records what came of them and feeds the outcomes back to the planner
for the next timers. Submission is a collaborator (``batch_submit.BatchSubmitter``). The
ledger is the only memory that matters; everything kept here (poll timers, backoffs) is
rebuilt harmlessly after a restart.

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from octopipe.core.amounts import format_usd
from octopipe.core.config_models import MAX_POLL_INTERVAL_S
from octopipe.core.registry import Registry
from octopipe.core.states import BATCH_LIVE, BatchEvent, BatchState
from octopipe.engine import batch_plan as plan
from octopipe.engine.batch_collect import LOST, BatchRecorder, Tally, run_tag
from octopipe.engine.batch_packing import CostModel, batch_limits
from octopipe.engine.batch_plan import (
    DOWNLOAD_TRIES,
    JITTER,
    BatchAction,
    BatchTimer,
    OpenBatch,
    PlanSettings,
    StepTimer,
    StepView,
)
from octopipe.engine.batch_submit import BatchClients, BatchSubmitter, Outcome, trace_op
from octopipe.engine.cost_budget import CostBudget
from octopipe.engine.prices import price_registry
from octopipe.engine.routes import StepRoute, resolve_routes
from octopipe.engine.runlog import Trace
from octopipe.engine.runner import LLMExecutor, RunContext
from octopipe.errors import IncompleteResults, OctopipeError, ProviderError, UsageError
from octopipe.providers.batch_base import (
    INTENT_KEY,
    BatchHandle,
    BatchProvider,
    BatchRequestLine,
    BatchStatus,
)
from octopipe.providers.catalog import catalog
from octopipe.store.records import BatchRow

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


class BatchExecutor:
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
        self.registry = registry or price_registry(ctx.compiled.pipeline)
        self.fallback = fallback
        config = ctx.compiled.pipeline.config
        self.api = config.api
        self.max_attempts = options.max_attempts or config.processing.validation_retry.max_attempts
        poll_s = options.poll_interval_s or config.api.poll_interval_seconds
        retry = config.api.retry
        self.settings = PlanSettings(
            poll_s=poll_s,
            linger_s=options.linger_s if options.linger_s is not None else min(poll_s, 60.0),
            deadline_hours=config.api.batch.deadline_hours,
            max_inflight=config.api.max_inflight_batches,
            retry_initial_s=retry.initial_delay_seconds,
            retry_multiplier=retry.backoff_multiplier,
            retry_max_s=retry.max_delay_seconds,
        )
        self.costs = CostModel(self.registry)
        info = ctx.ledger.run_info()
        self.tag = run_tag(info.name, info.created_at)
        routes = resolve_routes(
            ctx.compiled, self.registry, options.provider, options.model, options.price_as
        )
        self.routes = {r.index: r for r in routes if r is not None}
        if options.submit:
            for route in self.routes.values():
                if not catalog().has_batch(route.provider):
                    raise UsageError(
                        f"step {route.cstep.name!r}: provider {route.provider!r} has no batch "
                        f"API; run it with --realtime, or use {catalog().batch_names()}"
                    )
        limits = {
            i: batch_limits(
                self.registry, r.provider, r.model, config.api, config.processing.chunk_size
            )
            for i, r in self.routes.items()
        }
        self.limits = limits
        self.clients = BatchClients(client_for)
        self.trace = Trace(ctx.paths.trace)
        self.submitter = BatchSubmitter(
            ctx, budget, self.costs, limits, self.tag, self.clients, self.trace
        )
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.timers: dict[str, BatchTimer] = {}
        self.step_timers: dict[int, StepTimer] = {}
        self.paused_steps: set[int] = set()  # fell back to realtime after a deadline
        self.live: list[BatchRow] = []
        self.reconciling: set[str] = set()
        self._last_heartbeat = time.monotonic()
        self._rng = random.Random()
        self.deadline = time.monotonic() + options.timeout_s if options.timeout_s else None

    # --- the executor protocol ------------------------------------------------------------------

    async def pump(self) -> bool:
        progressed = self._reap()
        self.live = self.ctx.ledger.batches(*BATCH_LIVE)
        self.submitter.open_batches_read()
        self.budget.hold_open_batches(sum(b.estimate_usd or 0.0 for b in self.live))
        now = time.monotonic()
        if not self.ctx.stop_requested():
            progressed |= self._follow(now)
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
            if local_id not in self.submitter.submitting:
                task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=120)
        self._reap()
        self.trace.close()
        for client in self.clients.made():
            with contextlib.suppress(Exception):
                await client.aclose()

    def batch_summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.live:
            out[b.state.value] = out.get(b.state.value, 0) + 1
        return out

    # --- what is due (decided by ``batch_plan``) ----------------------------------------------

    def _follow(self, now: float) -> bool:
        """Start the operation the planner says is due for each open batch; True when a
        collection started."""
        rows = {row.local_id: row for row in self.live}
        actions, self.timers = plan.plan_batches(
            self._snapshot(),
            self.timers,
            now,
            self.settings,
            busy=frozenset(self.tasks),
            submitting=bool(self.submitter.submitting),
            reconciling=any(r in self.tasks for r in self.reconciling),
        )
        for action in actions:
            self._start(action.local_id, self._operation(action, rows[action.local_id]))
        return any(isinstance(a, plan.Collect) for a in actions)

    def _operation(self, action: BatchAction, row: BatchRow) -> Any:
        if isinstance(action, plan.Collect):
            return self._collect(row)
        if isinstance(action, plan.Reconcile):
            self.reconciling.add(row.local_id)
            return self._reconcile(row)
        if isinstance(action, plan.Cancel):
            return self._cancel_stuck(row)
        return self._poll(row)

    def _snapshot(self) -> list[OpenBatch]:
        wall = datetime.now(UTC)
        return [OpenBatch(b.local_id, b.state, _age_h(b, wall)) for b in self.live]

    def _submit_due(self, now: float) -> bool:
        progressed = False
        inflight = len(self.live)
        for index, route in self.routes.items():
            limits = self.limits[index]
            while not self.ctx.stop_requested() and plan.submit_open(
                inflight,
                self.settings,
                submitting=bool(self.submitter.submitting),
                reconciling=bool(self.reconciling),
            ):
                timer = self.step_timers.get(index)
                paused = index in self.paused_steps
                if not plan.step_open(timer, now, paused=paused):
                    break
                pending = self.ctx.ledger.pending_count(index, limits.max_requests)
                upstream = bool(pending) and pending < limits.max_requests
                view = StepView(
                    index,
                    pending,
                    limits.max_requests,
                    upstream_live=upstream and self.ctx.ledger.live_before(index),
                    paused=paused,
                )
                submit, self.step_timers[index] = plan.plan_step(view, timer, now, self.settings)
                if submit is None or not self._pack(route, len(self.live)):
                    break
                self.step_timers[index] = plan.after_packed(self.step_timers[index])
                inflight += 1
                progressed = True
        return progressed

    def _pack(self, route: StepRoute, open_batches: int) -> bool:
        packed = self.submitter.pack(route, open_batches)
        if packed.row is not None:
            self._start(packed.row.local_id, self._submit(route, packed.row, packed.lines))
        return packed.progressed

    # --- submit, reconcile, poll, cancel --------------------------------------------------------

    async def _submit(self, route: StepRoute, row: BatchRow, lines: list[BatchRequestLine]) -> None:
        result = await self.submitter.submit(route, row, lines)
        now = time.monotonic()
        step = self.step_timers.get(route.index)
        if result.outcome is Outcome.SUBMITTED:
            self.timers[row.local_id], self.step_timers[route.index] = plan.after_submitted(
                step, now, self.settings
            )
        elif result.outcome is Outcome.RATE_LIMITED:
            self._back_off(route.index, result.retry_after)
        elif result.outcome is Outcome.UNCERTAIN:
            self.timers[row.local_id] = plan.after_uncertain_submit(now)

    async def _reconcile(self, row: BatchRow) -> None:
        client = self.clients(row.provider)
        finder = client.finder()
        if finder is None:  # its batches carry no metadata (the spec's can_find)
            found = await _match_unrecorded(client, row, self._known_ids())
        else:
            try:
                since = _timestamp(row.created_at) - CLOCK_SLACK_S
                found = await finder.find(INTENT_KEY, row.local_id, since=since)
            except ProviderError as exc:
                self._after_lookup(row, "error")
                self.ctx.log.write("RECONCILE", f"batch {row.local_id}: {exc.message}; will retry")
                return
        decision = self._after_lookup(row, "found" if found else "missing")
        if decision is plan.Lookup.LOOK_AGAIN:
            # A provider's list may lag behind a batch just created: look again before
            # concluding the intent never reached it (and resubmitting its units).
            return
        if decision is plan.Lookup.ABANDON:
            self.ctx.ledger.advance_batch(
                row.local_id, BatchEvent.RECONCILE_MISSING, error="never reached the provider"
            )
            self.submitter.retries_may_wait(row.step_idx)
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
        self.ctx.log.write(
            "RECONCILE", f"batch {row.local_id} found at the provider: {handle.provider_batch_id}"
        )

    def _after_lookup(self, row: BatchRow, result: Any) -> plan.Lookup:
        timer, decision = plan.after_lookup(
            self.timers.get(row.local_id), result, time.monotonic(), self.settings
        )
        self.timers[row.local_id] = timer
        return decision

    def _known_ids(self) -> set[str]:
        return {b.provider_batch_id for b in self.ctx.ledger.batches() if b.provider_batch_id}

    async def _poll(self, row: BatchRow) -> None:
        client = self.clients(row.provider)
        t0 = time.monotonic()
        try:
            status = await client.poll(_handle(row))
        except ProviderError as exc:
            self._trace("poll", row, t0, status=exc.status or type(exc).__name__)
            kind = plan.poll_error(exc)
            if kind is plan.PollError.LOST:
                self._lost(row)
            elif kind is plan.PollError.PAUSE:
                self.ctx.request_stop(exc.message, exit_code=exc.exit_code)
            else:
                self.timers[row.local_id] = plan.after_poll_error(
                    self._timer(row.local_id), time.monotonic()
                )
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
        timer = self._timer(row.local_id)
        if note != timer.last_status:
            self.ctx.ledger.note_batch_status(row.local_id, note)
        spread = 1 + self._rng.uniform(-JITTER, JITTER)
        self.timers[row.local_id] = plan.after_poll(
            timer, status.done, note, time.monotonic(), self.settings, spread
        )

    def _lost(self, row: BatchRow) -> None:
        self.ctx.ledger.advance_batch(
            row.local_id,
            BatchEvent.PROVIDER_FAILED,
            provider_status=LOST,
            error="the provider no longer knows this batch (deleted or another account)",
        )
        self.ctx.log.write("POLL", f"batch {row.local_id}: not found at the provider")

    async def _cancel_stuck(self, row: BatchRow) -> None:
        client = self.clients(row.provider)
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
        self.timers[row.local_id] = plan.after_cancel(self._timer(row.local_id), time.monotonic())

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
            # what was recorded, even if collection stopped
            self.budget.charge(tally.cost_usd, unpriced=tally.unpriced)

    async def _collect_into(self, row: BatchRow, recorder: BatchRecorder, tally: Tally) -> None:
        client = self.clients(row.provider)
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
                    self.timers[row.local_id] = plan.after_collect_error(
                        time.monotonic(), self.settings
                    )
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
            self.submitter.retries_may_wait(row.step_idx)  # units with an attempt may wait
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
        """After an incomplete download (``batch_plan.after_cut_download``): schedule the
        next download or pause the run (False), or take the results as complete (True)."""
        recorded = tally.valid + tally.failed
        timer, decision = plan.after_cut_download(
            self.timers.get(row.local_id), exc, recorded, time.monotonic(), self.settings
        )
        self.timers[row.local_id] = timer
        if tally.stop_reason:  # a line said the account cannot be used
            self.ctx.log.write("PAUSE", f"{row.provider}: {tally.stop_reason}")
            self.ctx.request_stop(tally.stop_reason)
        lines = f"{recorded:,} lines recorded"
        if decision.delay_s is not None:
            self.ctx.log.write(
                "COLLECT",
                f"batch {row.local_id}: {exc.message}; {lines}, fetching them again in "
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
            timer, decision = plan.after_task_error(
                self.timers.get(key), exc, time.monotonic(), self.settings
            )
            if decision is plan.TaskError.RETRY:
                assert timer is not None
                self.timers[key] = timer  # try again later, not at once
            elif decision is plan.TaskError.PAUSE:  # no key, auth, quota, a provider not set up
                assert isinstance(exc, OctopipeError)
                self.ctx.request_stop(str(exc), exit_code=exc.exit_code)
            else:
                raise exc
        return bool(done)

    def _timer(self, local_id: str) -> BatchTimer:
        return self.timers.get(local_id) or plan.new_timer(self.settings)

    def _back_off(self, index: int, retry_after: float | None) -> None:
        self.step_timers[index] = plan.back_off(
            self.step_timers.get(index), retry_after, time.monotonic(), self.settings
        )

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
        due = plan.next_poll_in(self._snapshot(), self.timers, now)
        parts = [f"{b.local_id} {b.provider_status or b.state.value}" for b in waiting[:5]]
        more = f" (+{len(waiting) - 5} more)" if len(waiting) > 5 else ""
        next_poll = f"; next poll in {due:.0f} s" if due is not None else ""
        self.ctx.log.write(
            "HEARTBEAT",
            f"{len(waiting)} open batch(es): {', '.join(parts)}{more}{next_poll}; "
            f"spent {format_usd(self.budget.spent)}",
        )

    def _trace(self, op: str, row: BatchRow, t0: float, **fields: Any) -> None:
        trace_op(self.trace, op, row, t0, **fields)


def _age_h(row: BatchRow, wall: datetime) -> float | None:
    """Hours since ``row`` was submitted (``None``: not submitted)."""
    if row.submitted_at is None:
        return None
    submitted = datetime.fromisoformat(row.submitted_at.replace("Z", "+00:00"))
    return (wall - submitted).total_seconds() / 3600


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
    requests, unknown to the ledger, created nearest the intent (see ``BatchProvider.lister``;
    every batch since the intent less ``CLOCK_SLACK_S`` is looked at)."""
    lister = client.lister()
    if lister is None:
        return []
    at = _timestamp(row.created_at)
    candidates = [
        h
        for h, total in await lister.recent(at - CLOCK_SLACK_S)
        if h.provider_batch_id not in known and total == row.n_units
    ]
    # the batch created nearest the intent: ours was created right after it was recorded
    return sorted(candidates, key=lambda h: abs(h.created_at - at))[:1]


def _timestamp(iso: str) -> float:
    """A ledger timestamp (ISO 8601, UTC) as Unix seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


__all__ = ["BatchExecutor", "BatchOptions", "LLMExecutor"]
