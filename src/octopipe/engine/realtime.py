"""Realtime execution of LLM steps: many calls in flight, paced, retried by unit, all recorded.

Each pass of the runner's loop calls ``pump``: finished calls are recorded in one transaction
(the attempt with its prompt, raw answer, usage, cost and latency; the unit valid, failed for
another attempt, or exhausted), failed units with budget left go back to pending, then new
units are claimed up to the concurrency limit and their calls started. A unit's next step is
pending the moment it is valid, so units stream through the steps with no barrier.

Provider errors are handled by type (see ``errors.py``): rate limits and transient errors are
retried within the call with backoff (``api.retry``), honouring ``Retry-After``. What a call
that still failed costs its unit is decided by ``outage.ProviderHealth``: an outage (refused
connections, 5xx for everyone) or a refusal every unit gets (a wrong model name) pauses the
run with the reason instead of spending units' attempts; auth and quota errors pause it at
once. Answers failing parse, schema or rules are retried as new attempts of only those units,
up to ``validation_retry.max_attempts``. Provider errors are logged, summarised per kind.

Nothing escapes: a call task never raises (an adapter's surprise becomes a classified
failure of that unit), and finished calls stay queued until the ledger has recorded them; if
it cannot (disk full), the run stops with that error after a few tries rather than drop a
paid answer silently. Stopping waits a short grace for calls on the wire (``STOP_GRACE_S``
after Ctrl+C or ``pause``; the request timeout otherwise) and abandons the rest: their units
go back to pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from octopipe.core.costs import Tier, estimate_tokens
from octopipe.core.judge import PriceList
from octopipe.core.registry import Registry
from octopipe.core.steps import StepFailure
from octopipe.engine.attempts import attempts_of
from octopipe.engine.cost_budget import CostBudget
from octopipe.engine.outage import ErrorDigest, ProviderHealth, Verdict, error_label
from octopipe.engine.pacing import Pacer
from octopipe.engine.prices import price_registry
from octopipe.engine.realtime_attempts import (
    Finished,
    StepTarget,
    answered,
    internal_failure,
    malformed_failure,
    provider_failure,
    render_failure,
)
from octopipe.engine.realtime_ledger import RealtimeRecorder
from octopipe.engine.routes import (
    FLEX_TIMEOUT_S,
    refuse_unflexible,
    refuse_unpriced_cap,
    resolve_routes,
)
from octopipe.engine.runlog import Trace
from octopipe.engine.runner import RunContext
from octopipe.errors import (
    EXIT_PROVIDER,
    AdapterError,
    FlexUnavailable,
    MalformedResponse,
    ProviderError,
    RateLimited,
    TransientProviderError,
)
from octopipe.providers.base import DEADLINE_GRACE_S, LLMRequest, LLMResponse, RealtimeProvider
from octopipe.providers.catalog import catalog
from octopipe.providers.ratelimit_headers import StatedLimits
from octopipe.store.records import ClaimedUnit

STOP_GRACE_S = 2.0
"""After Ctrl+C or ``pause``: how long answers already on their way are waited for."""


@dataclass(frozen=True)
class RealtimeOptions:
    """Run-time choices for realtime mode (CLI flags over config over registry defaults)."""

    provider: str | None = None
    model: str | None = None
    concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_cost_usd: float | None = None
    timeout_s: float | None = None
    max_attempts: int | None = None
    base_url: str | None = None  # an OpenAI-compatible server (over ``api.base_url``)
    price_as: dict[str, str] = field(default_factory=dict)  # provider -> registry provider
    flex: bool | None = None  # --flex (None: api.realtime.service_tier)
    flex_fallback: str | None = None  # --flex-fallback standard|batch|none (None: config's)


class RealtimeExecutor:
    def __init__(
        self,
        ctx: RunContext,
        options: RealtimeOptions,
        client_for: Callable[[str], RealtimeProvider],
        registry: Registry | None = None,
        only_steps: set[int] | None = None,
        *,
        budget: CostBudget,
        to_batch: Callable[[int], None] | None = None,
    ) -> None:
        """``only_steps``: the LLM steps this executor may start (``None``: all); the set may
        grow while the run goes on (a batch step falling back to realtime). ``budget``: the
        run's money, shared with the run's other executors. ``to_batch(step_index)``: hands a
        step to a batch executor (``--flex-fallback batch``): this executor then starts no
        more units of it."""
        self.ctx = ctx
        self.to_batch = to_batch
        self.budget = budget
        self.only_steps = only_steps
        self.options = options
        self.registry = registry or price_registry(ctx.compiled.pipeline)
        config = ctx.compiled.pipeline.config
        self.max_attempts = options.max_attempts or config.processing.validation_retry.max_attempts
        self.retry = config.api.retry
        self.auto_retry = config.api.realtime.auto_retry
        self.outage_grace_s = config.api.realtime.pause_after_outage_seconds
        realtime = config.api.realtime
        self.flex = options.flex if options.flex is not None else realtime.service_tier == "flex"
        self.tier: Tier = "flex" if self.flex else "standard"
        self.flex_fallback = options.flex_fallback or realtime.flex_fallback
        self.request_timeout_s = config.api.request_timeout_seconds
        explicit = options.concurrency or config.api.realtime.concurrency
        self.session_usd = 0.0  # what this executor's recorded calls cost
        self.calls_priced = 0
        self.tasks: dict[asyncio.Task[Finished], tuple[StepTarget, ClaimedUnit]] = {}
        self.sending: set[asyncio.Task[Any]] = set()  # tasks with a request on the wire
        self.done: list[Finished] = []
        self.parked: list[tuple[StepTarget, ClaimedUnit]] = []  # transient failure, uncharged
        self.held: list[tuple[Finished, int]] = []  # refused; provider successes at the time
        self.recorder = RealtimeRecorder(ctx, self.auto_retry)
        self.digest = ErrorDigest(ctx.log.write)
        self.trace = Trace(ctx.paths.trace)
        self.targets = [t for t in self._targets(client_for) if t is not None]
        self.explicit_concurrency = explicit
        self.concurrency = explicit or default_concurrency(
            [t.pacer.rpm for t in self.targets if t.pacer.rpm]
        )
        # The time limit counts from here: building the clients imports the vendor SDKs,
        # which takes seconds on a slow machine and would eat a short limit before any call.
        self.deadline = time.monotonic() + options.timeout_s if options.timeout_s else None

    # --- set-up ------------------------------------------------------------------------------

    def _targets(self, client_for: Callable[[str], RealtimeProvider]) -> list[StepTarget | None]:
        api = self.ctx.compiled.pipeline.config.api
        pacers: dict[tuple[str, str], Pacer] = {}
        healths: dict[tuple[str, str, str | None], ProviderHealth] = {}
        out: list[StepTarget | None] = []
        routes = resolve_routes(
            self.ctx.compiled,
            self.registry,
            self.options.provider,
            self.options.model,
            self.options.price_as,
        )
        priced = [(r.cstep.name, r.provider, r.model, r.price_provider) for r in routes if r]
        if self.flex:
            refuse_unflexible(priced, self.registry, lambda name: _flexible(client_for(name)))
        refuse_unpriced_cap(priced, self.registry, "realtime", self.budget.cap, tier=self.tier)
        for route in routes:
            if route is None:
                out.append(None)
                continue
            key = (route.provider, route.model)
            if key not in pacers:
                limits = self.registry.limits(route.provider, route.model)
                rpm_cap, tpm_cap = self.options.rpm or api.rpm, self.options.tpm or api.tpm
                pacers[key] = Pacer(  # the account's stated limits replace these when learned
                    rpm=rpm_cap or limits.rpm,
                    tpm=tpm_cap or limits.tpm,
                    rpm_cap=rpm_cap,
                    tpm_cap=tpm_cap,
                )
            client = client_for(route.provider)
            endpoint = client.endpoint
            watched = (route.provider, route.model, endpoint)
            if watched not in healths:
                healths[watched] = ProviderHealth(
                    grace_s=self.outage_grace_s,
                    probe_start_s=self.retry.initial_delay_seconds,
                    endpoint=endpoint,
                )
            out.append(
                StepTarget(
                    route.index,
                    route.cstep,
                    route.provider,
                    route.model,
                    client,
                    pacers[key],
                    _with_tier(route.request_defaults, self.flex),
                    PriceList(self.registry, route.price_provider, route.model, self.tier),
                    healths[watched],
                    tier=self.tier,
                )
            )
        return out

    # --- the executor protocol ------------------------------------------------------------------

    async def pump(self) -> bool:
        progressed = self._record_finished()
        now = time.monotonic()
        self.digest.flush(now)
        if self.recorder.failures or self._check_limits() or self._check_health(now):
            return progressed
        for target in self.targets:
            if self.only_steps is not None and target.index not in self.only_steps:
                continue
            if self.ctx.stop_requested():
                break
            progressed |= self._send_parked(target, now)
            free = self.concurrency - len(self.tasks)
            if free <= 0 or target.health.is_open:
                continue
            claimed = self.ctx.ledger.claim_pending(target.index, free)
            for unit in claimed:
                self._start(target, unit)
            progressed |= bool(claimed)
        if not progressed and self.tasks:
            await asyncio.wait(self.tasks, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            progressed = self._record_finished()
        return progressed

    def busy(self) -> bool:
        waiting = self.parked or self.held or self.recorder.waiting
        return bool(self.tasks or self.done or waiting)

    def batch_summary(self) -> dict[str, int]:
        return {}  # realtime has no batches

    async def stop(self) -> None:
        """Record what finished; wait for calls on the wire (a short grace after Ctrl+C or
        ``pause``, their own timeout otherwise), abandon the rest (their units stay claimed
        and the runner returns them to pending); close the provider clients while their
        event loop still runs.

        Requests not yet sent -- waiting for a pacer slot or for a retry -- are cancelled at
        once; so are units parked or held for a provider problem: they go back to pending
        with no attempt used.
        """
        try:
            await self._drain()
            self._record_finished(now=True)
            if self.recorder.unwritten:
                raise self.recorder.unrecorded_error()
        finally:
            self.digest.flush(time.monotonic(), force=True)
            waiting = len(self.parked) + len(self.held)
            if waiting:
                self.ctx.log.write(
                    "STOP",
                    f"{waiting} unit(s) waiting for the provider go back to pending, "
                    "no attempt used",
                )
            self.parked.clear()
            self.held.clear()
            self.trace.close()
            clients = {id(t.client): t.client for t in self.targets}
            for client in clients.values():
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _drain(self) -> None:
        if not self.tasks:
            return
        limit = self._wait_limit()
        self._cancel_unsent()
        await asyncio.sleep(0)
        if self.sending:
            self.ctx.log.write(
                "STOP",
                f"waiting up to {limit:.0f} s for {len(self.sending)} call(s) in flight; "
                "answers arriving by then are recorded, the rest are abandoned and their "
                "units go back to pending",
            )
        started = time.monotonic()
        while self.tasks and time.monotonic() - started < limit:
            await asyncio.wait(self.tasks, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            self._cancel_unsent()  # a call that failed does not retry while stopping
            if self.done and not self.recorder.failures:
                self._record_finished()
            limit = min(limit, self._wait_limit())  # Ctrl+C while waiting shortens the wait
        left = list(self.tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=1.0)
            self.ctx.log.write(
                "STOP", f"abandoned {len(left)} call(s) still in flight; their units are pending"
            )

    def _cancel_unsent(self) -> None:
        for task in set(self.tasks) - self.sending:
            task.cancel()

    def _wait_limit(self) -> float:
        if self.ctx.stop_urgent():
            return STOP_GRACE_S
        timeouts = [float(t.request_defaults.get("timeout_s", 120.0)) for t in self.targets]
        return max(timeouts, default=120.0) + DEADLINE_GRACE_S

    # --- one call ----------------------------------------------------------------------------------

    def _start(self, target: StepTarget, unit: ClaimedUnit) -> None:
        task = asyncio.create_task(self._attempt(target, unit))
        self.tasks[task] = (target, unit)
        task.add_done_callback(self._collect)

    def _collect(self, task: asyncio.Task[Finished]) -> None:
        """Done-callback of a call task: never raises, never loses the unit."""
        target, unit = self.tasks.pop(task, (None, None))
        if target is None or unit is None or task.cancelled():
            return  # abandoned on stop: the unit stays claimed; the runner releases it
        exc = task.exception()
        if exc is None:
            self.done.append(task.result())
        else:  # _attempt catches everything; this is the last line of defence
            self.done.append(self._internal_failure(target, unit, _now_iso(), exc))

    async def _attempt(self, target: StepTarget, unit: ClaimedUnit) -> Finished:
        started = _now_iso()
        try:
            return await self._attempt_call(target, unit, started)
        except Exception as exc:  # a bug here must fail the unit, not vanish in a callback
            return self._internal_failure(target, unit, started, exc)

    async def _attempt_call(self, target: StepTarget, unit: ClaimedUnit, started: str) -> Finished:
        prompt = target.cstep.try_render(unit.unit_id, unit.record)
        if isinstance(prompt, StepFailure):
            return render_failure(target, unit, started, prompt)
        request = LLMRequest(
            unit_id=unit.unit_id, step=target.cstep.name, prompt=prompt, **target.request_defaults
        )
        attempts = attempts_of(unit, self.max_attempts)
        try:
            response = await self._call(target, request)
        except MalformedResponse as exc:
            return malformed_failure(target, unit, prompt, started, exc, attempts)
        except ProviderError as exc:
            return provider_failure(target, unit, prompt, started, exc, attempts)
        return answered(target, unit, prompt, started, response, attempts)

    async def _call(self, target: StepTarget, request: LLMRequest) -> LLMResponse:
        """One request with in-call retries for rate limits and transient errors."""
        delay = self.retry.initial_delay_seconds
        for attempt in range(1, self.retry.max_attempts + 1):
            booked = estimate_tokens(request.prompt) + request.max_tokens // 4
            await target.pacer.wait_turn(booked)
            t0 = time.monotonic()
            try:
                response = await self._send(target, request)
            except FlexUnavailable:
                # flex has no capacity: not the account's pace (the pacer is left alone)
                self._trace(target, request, t0, status="429 flex unavailable")
                if attempt == self.retry.max_attempts or target.health.is_open:
                    if self.flex_fallback == "standard":
                        return await self._at_standard(target, request)
                    raise  # parked uncharged by ``outage``; tried at flex again later
                await asyncio.sleep(delay)
            except RateLimited as exc:
                target.pacer.settle(booked, 0)  # refused: the account counted no tokens
                self._learn(target, exc.stated_limits)
                target.pacer.on_rate_limited(exc.retry_after)
                self._trace(target, request, t0, status=429)
                if attempt == self.retry.max_attempts or target.health.is_open:
                    raise  # with the circuit open, the probes retry (``outage``)
                await asyncio.sleep(max(exc.retry_after or 0.0, delay))
            except TransientProviderError as exc:
                self._trace(target, request, t0, status=exc.status or "transient")
                if attempt == self.retry.max_attempts or target.health.is_open:
                    raise
                await asyncio.sleep(delay)
            except ProviderError as exc:  # bad request, auth, quota: traced like every call
                self._trace(target, request, t0, status=exc.status or type(exc).__name__)
                raise
            else:
                used = response.usage.input_tokens + response.usage.output_tokens
                target.pacer.settle(booked, used)
                self._learn(target, response.stated_limits)
                target.pacer.on_success()
                self._trace(target, request, t0, status=200, response=response)
                return response
            delay = min(delay * self.retry.backoff_multiplier, self.retry.max_delay_seconds)
        raise AssertionError("unreachable")

    def _learn(self, target: StepTarget, stated: StatedLimits | None) -> None:
        """Pace ``target`` to the limits its account stated; say so when the pace changes
        (run.log and a ``pace`` line in trace.jsonl), and size the default concurrency to it."""
        pacer = target.pacer
        if not pacer.learn(stated):
            return
        rpm, tpm = pacer.pace_rpm, pacer.pace_tpm
        self.ctx.log.write(
            "pacing",
            f"{target.provider}/{target.model}: the account states "
            f"{_per_minute(pacer.learned_rpm, 'requests')}, "
            f"{_per_minute(pacer.learned_tpm, 'tokens')}; pacing at "
            f"{_per_minute(rpm, 'requests')}, {_per_minute(tpm, 'tokens')}",
        )
        self.trace.write(
            kind="pace",
            provider=target.provider,
            model=target.model,
            stated_rpm=pacer.learned_rpm,
            stated_tpm=pacer.learned_tpm,
            pace_rpm=None if rpm is None else round(rpm, 1),
            pace_tpm=None if tpm is None else round(tpm),
        )
        if not self.explicit_concurrency and rpm:
            self.concurrency = max(self.concurrency, default_concurrency([rpm]))

    async def _at_standard(self, target: StepTarget, request: LLMRequest) -> LLMResponse:
        """``--flex-fallback standard``: the call flex could not take, sent at the standard
        tier (with the standard timeout), and priced there."""
        standard = dataclasses.replace(request, service_tier=None, timeout_s=self.request_timeout_s)
        response = await self._call(target, standard)
        return dataclasses.replace(response, service_tier=response.service_tier or "default")

    async def _send(self, target: StepTarget, request: LLMRequest) -> LLMResponse:
        task = asyncio.current_task()
        if task is not None:
            self.sending.add(task)
        try:
            return await target.client.complete(request)
        except (ProviderError, asyncio.CancelledError):
            raise
        except Exception as exc:  # an adapter broke its contract: classify, do not crash
            message = f"adapter error {type(exc).__name__}: {exc}"[:300]
            raise AdapterError(message, provider=target.provider) from exc
        finally:
            self.sending.discard(task)

    def _internal_failure(
        self, target: StepTarget, unit: ClaimedUnit, started: str, exc: BaseException
    ) -> Finished:
        finished = internal_failure(
            target, unit, started, exc, attempts_of(unit, self.max_attempts)
        )
        assert finished.failure is not None
        message = finished.failure.message
        self.ctx.log.write("ERROR", f"{unit.unit_id} @ {target.cstep.name}: {message}")
        return finished

    # --- deciding what a failure costs ------------------------------------------------------------

    def _judge(self, finished: list[Finished]) -> None:
        """Queue finished calls for the ledger, or park, hold or release their units (see
        ``outage``): what a failed call costs its unit depends on how the provider fares."""
        now = time.monotonic()
        for f in finished:
            health, uid = f.target.health, f.unit.uid
            if f.error is None:
                if f.answered:
                    health.on_success(uid)
                self.recorder.unwritten.append(f)
                continue
            if self._flex_to_batch(f):
                continue
            verdict = health.on_failure(uid, f.error, now)
            if verdict is Verdict.CHARGE:
                self.recorder.unwritten.append(f)
                self._note(f, self._charge_text(f))
            elif verdict is Verdict.PARK:
                self.parked.append((f.target, f.unit))
                used = f"{f.unit.budget_used}/{self.max_attempts}"
                self._note(f, f"not charged ({used} attempts used); sent again later")
            elif verdict is Verdict.HOLD:  # noted once charged, or released by a pause
                self.held.append((f, health.successes))
            else:
                self.recorder.unreleased.append(f)
                self._note(f, "released, no attempt used (the run pauses)")
                self.ctx.log.write("PAUSE", f.error.message)
                self.ctx.request_stop(f.error.message, exit_code=EXIT_PROVIDER)
        self._charge_held()

    def _flex_to_batch(self, f: Finished) -> bool:
        """``--flex-fallback batch``: a call still "resource unavailable" after its in-call
        retries returns its unit to pending (no attempt used) and hands its step to batch;
        true when it did."""
        if not (
            isinstance(f.error, FlexUnavailable)
            and self.flex_fallback == "batch"
            and self.to_batch is not None
        ):
            return False
        self.recorder.unreleased.append(f)
        index = f.target.index
        if self.only_steps is None:
            self.only_steps = {t.index for t in self.targets}
        if index in self.only_steps:
            self.only_steps.discard(index)
            self.to_batch(index)
            self.ctx.log.write(
                "FALLBACK",
                f"step {f.target.cstep.name}: flex stays unavailable; the rest runs in batch",
            )
        self._note(f, "not charged; sent in batch")
        return True

    def _charge_held(self, idle: set[int] | None = None) -> None:
        """Charge the refusals whose provider has answered other calls since (their request
        was at fault), or whose provider has nothing else to do (``idle``: ids of healths)
        and is not pausing the run for them."""
        keep: list[tuple[Finished, int]] = []
        for f, successes_then in self.held:
            health = f.target.health
            if health.successes > successes_then or (idle is not None and id(health) in idle):
                self.recorder.unwritten.append(f)
                self._note(f, self._charge_text(f))
            else:
                keep.append((f, successes_then))
        self.held = keep

    def _charge_text(self, f: Finished) -> str:
        assert f.failure is not None
        used = f"{f.unit.budget_used + 1}/{self.max_attempts}"
        if not f.failure.retryable:
            return f"attempt {used} charged, now exhausted (not retryable)"
        if f.terminal:
            return f"attempt {used} charged, now exhausted"
        return f"attempt {used} charged, retried later"

    def _note(self, f: Finished, outcome: str) -> None:
        assert f.error is not None
        label = f"{f.target.cstep.name}: {error_label(f.error)}"
        self.digest.note(label, f.unit.unit_id, outcome, time.monotonic())

    def _send_parked(self, target: StepTarget, now: float) -> bool:
        """Send again the parked units of ``target`` that may go (see ``ProviderHealth``)."""
        if not self.parked:
            return False
        health = target.health
        in_flight = sum(1 for t, _ in self.tasks.values() if t.health is health)
        keep: list[tuple[StepTarget, ClaimedUnit]] = []
        sent = False
        for t, unit in self.parked:
            if (
                t is target
                and len(self.tasks) < self.concurrency
                and health.may_send_parked(unit.uid, now, in_flight=in_flight)
            ):
                self._start(t, unit)
                in_flight += 1
                sent = True
            else:
                keep.append((t, unit))
        self.parked = keep
        return sent

    def _check_health(self, now: float) -> bool:
        """Pause the run when a provider is down or refuses everyone (``ProviderHealth``);
        charge held refusals of a provider that has nothing else to do."""
        idle: set[int] = set()
        for target in self.targets:
            health = target.health
            if health.streak_kind is None:
                continue
            busy = any(t.health is health for t, _ in (*self.tasks.values(), *self.parked))
            is_idle = not busy and not self._has_pending(target)
            reason = health.pause_reason(now, idle=is_idle)
            if reason is not None:
                self.ctx.log.write("PAUSE", reason)
                self.ctx.request_stop(reason, exit_code=EXIT_PROVIDER)
                return True
            if is_idle:
                idle.add(id(health))
        if self.held and idle:
            self._charge_held(idle)
        return False

    def _has_pending(self, target: StepTarget) -> bool:
        if self.only_steps is not None and target.index not in self.only_steps:
            return False
        return self.ctx.ledger.pending_count(target.index, 1) > 0

    # --- recording ---------------------------------------------------------------------------------

    def _record_finished(self, *, now: bool = False) -> bool:
        """Judge what finished, then write it in one transaction (``RealtimeRecorder``)."""
        if self.done:
            finished, self.done = self.done, []
            self._judge(finished)
        written = self.recorder.flush(self.targets, now=now)
        if written is None:
            return False
        for item in written:
            item.target.health.forget(item.unit.uid)
            if item.error is None or not item.error.fatal_for_run:
                self.budget.charge(
                    item.attempt.cost_usd or 0.0, unpriced=item.attempt.cost_usd is None
                )
                self.session_usd += item.attempt.cost_usd or 0.0
                self.calls_priced += item.attempt.cost_usd is not None
        return True

    def _check_limits(self) -> bool:
        # Calls in flight count at what a call of this session cost (nothing before the first
        # answer, as in a fresh run), never at the whole sum spent before a resume.
        per_call = self.session_usd / max(1, self.calls_priced)
        self.budget.hold_calls(len(self.tasks) * per_call)
        if self.budget.reached():
            self.ctx.request_stop(self.budget.reached_reason())
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.ctx.request_stop("time limit reached")
            return True
        return False

    def _trace(
        self,
        target: StepTarget,
        request: LLMRequest,
        t0: float,
        *,
        status: Any,
        response: LLMResponse | None = None,
    ) -> None:
        usage = response.usage if response else None
        self.trace.write(
            kind="call",
            provider=target.provider,
            model=target.model,
            unit=request.unit_id,
            step=request.step,
            status=status,
            latency_ms=round((time.monotonic() - t0) * 1000),
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
        )


DEFAULT_CONCURRENCY = 32
MAX_DEFAULT_CONCURRENCY = 256


def _with_tier(defaults: dict[str, Any], flex: bool) -> dict[str, Any]:
    """The request defaults of a step at the flex tier: ``service_tier`` and the longer
    timeout (`routes.FLEX_TIMEOUT_S`)."""
    if not flex:
        return defaults
    timeout = max(float(defaults.get("timeout_s") or 0.0), FLEX_TIMEOUT_S)
    return {**defaults, "service_tier": "flex", "timeout_s": timeout}


def _flexible(client: RealtimeProvider) -> bool:
    """The client's provider (``fake``: the vendor it emulates) offers the flex tier."""
    spec = catalog().get(client.name)
    return spec is not None and spec.flex


def default_concurrency(rpms: list[float]) -> int:
    """Calls in flight when none is configured: enough to reach the RPM limit at a latency of
    several seconds (a tenth of the limit: 1,200 rpm at 5 s latency needs 100), within bounds."""
    wanted = int(max(rpms, default=0) // 10)
    return max(DEFAULT_CONCURRENCY, min(MAX_DEFAULT_CONCURRENCY, wanted))


def _per_minute(value: float | None, what: str) -> str:
    return f"no {what} limit" if value is None else f"{value:,.0f} {what}/min"


def _now_iso() -> str:
    from octopipe.store.codec import utc_now

    return utc_now()


__all__ = ["RealtimeExecutor", "RealtimeOptions"]
