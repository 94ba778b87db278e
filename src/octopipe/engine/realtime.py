"""Realtime execution of LLM steps: many calls in flight, paced, retried by unit, all recorded.

Each pass of the runner's loop calls ``pump``: finished calls are recorded in one transaction
(the attempt with its prompt, raw answer, usage, cost and latency; the unit valid, failed for
another attempt, or exhausted), failed units with budget left go back to pending, then new
units are claimed up to the concurrency limit and their calls started. A unit's next step is
pending the moment it is valid, so units stream through the steps with no barrier.

Provider errors are handled by type (see ``errors.py``): rate limits and transient errors are
retried within the call with backoff (``api.retry``), honouring ``Retry-After``; a bad request
fails that unit; auth and quota errors pause the run. Answers failing parse, schema or rules
are retried as new attempts of only those units, up to ``validation_retry.max_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from octopipe.core.costs import cost_usd, estimate_tokens, format_usd
from octopipe.core.registry import Registry, load_registry
from octopipe.core.steps import CompiledStep, StepFailure
from octopipe.engine.pacing import Pacer
from octopipe.engine.routes import resolve_routes
from octopipe.engine.runlog import Trace
from octopipe.engine.runner import RunContext
from octopipe.errors import (
    ProviderError,
    RateLimited,
    TransientProviderError,
)
from octopipe.providers.base import LLMRequest, LLMResponse, RealtimeProvider
from octopipe.store.records import AttemptRecord, ClaimedUnit, Failure, Outcome, Stage, Success


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
    base_urls: dict[str, str] = field(default_factory=dict)  # provider -> base URL (emulator)
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)
    price_as: dict[str, str] = field(default_factory=dict)  # provider -> registry provider


@dataclass
class StepTarget:
    """Where one LLM step's calls go and how they are paced and priced."""

    index: int
    cstep: CompiledStep
    provider: str
    model: str
    client: RealtimeProvider
    pacer: Pacer
    request_defaults: dict[str, Any]
    price_provider: str


@dataclass
class Finished:
    target: StepTarget
    unit: ClaimedUnit
    attempt: AttemptRecord
    delta: dict[str, Any] | None = None
    failure: StepFailure | None = None
    stop_reason: str | None = None


class RealtimeExecutor:
    def __init__(
        self,
        ctx: RunContext,
        options: RealtimeOptions,
        client_for: Callable[[str], RealtimeProvider],
        registry: Registry | None = None,
        only_steps: set[int] | None = None,
    ) -> None:
        """``only_steps``: the LLM steps this executor may start (``None``: all); the set may
        grow while the run goes on (a batch step falling back to realtime)."""
        self.ctx = ctx
        self.only_steps = only_steps
        self.options = options
        self.registry = registry or load_registry()
        config = ctx.compiled.pipeline.config
        self.max_attempts = options.max_attempts or config.processing.validation_retry.max_attempts
        self.retry = config.api.retry
        self.auto_retry = config.api.realtime.auto_retry
        self.cost_cap = options.max_cost_usd or config.api.realtime.cost_cap_usd
        explicit = options.concurrency or config.api.realtime.concurrency
        # Money spent or committed by the other executor of a combined run (open batches at
        # their estimate): the cost cap holds for the run, not for each mode.
        self.committed_elsewhere: Callable[[], float] = lambda: 0.0
        self.base_spent = ctx.ledger.cost_totals().known_usd
        self.spent = self.base_spent
        self.calls_priced = 0
        self.tasks: set[asyncio.Task[Finished]] = set()
        self.sending: set[asyncio.Task[Any]] = set()  # tasks with a request on the wire
        self.done: list[Finished] = []
        self.trace = Trace(ctx.paths.trace)
        self.targets = [t for t in self._targets(client_for) if t is not None]
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
        out: list[StepTarget | None] = []
        routes = resolve_routes(
            self.ctx.compiled,
            self.registry,
            self.options.provider,
            self.options.model,
            self.options.price_as,
        )
        for route in routes:
            if route is None:
                out.append(None)
                continue
            key = (route.provider, route.model)
            if key not in pacers:
                limits = self.registry.limits(route.provider, route.model)
                pacers[key] = Pacer(
                    rpm=self.options.rpm or api.rpm or limits.rpm,
                    tpm=self.options.tpm or api.tpm or limits.tpm,
                )
            out.append(
                StepTarget(
                    route.index,
                    route.cstep,
                    route.provider,
                    route.model,
                    client_for(route.provider),
                    pacers[key],
                    route.request_defaults,
                    route.price_provider,
                )
            )
        return out

    # --- the executor protocol ------------------------------------------------------------------

    async def pump(self) -> bool:
        progressed = self._record_finished()
        if self._check_limits():
            return progressed
        for target in self.targets:
            if self.only_steps is not None and target.index not in self.only_steps:
                continue
            free = self.concurrency - len(self.tasks)
            if free <= 0 or self.ctx.stop_requested():
                break
            claimed = self.ctx.ledger.claim_pending(target.index, free)
            for unit in claimed:
                self._start(target, unit)
            progressed |= bool(claimed)
        if not progressed and self.tasks:
            await asyncio.wait(self.tasks, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            progressed = self._record_finished()
        return progressed

    def busy(self) -> bool:
        return bool(self.tasks) or bool(self.done)

    async def stop(self) -> None:
        """Let calls in flight finish (bounded by their timeouts) and record them; close the
        provider clients while their event loop still runs.

        On a pause (Ctrl+C, cost cap, time limit, auth error), requests not yet sent -- waiting
        for a pacer slot or for a retry -- are cancelled: their units stay claimed and the
        runner returns them to pending. Only requests already on the wire are waited for.
        """
        while self.tasks:
            if self.ctx.stop_requested():
                for task in self.tasks - self.sending:
                    task.cancel()
            await asyncio.wait(self.tasks, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
        self._record_finished()
        self.trace.close()
        clients = {id(t.client): t.client for t in self.targets}
        for client in clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()

    # --- one call ----------------------------------------------------------------------------------

    def _start(self, target: StepTarget, unit: ClaimedUnit) -> None:
        task = asyncio.create_task(self._attempt(target, unit))
        self.tasks.add(task)
        task.add_done_callback(self._collect)

    def _collect(self, task: asyncio.Task[Finished]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            self.done.append(task.result())

    async def _attempt(self, target: StepTarget, unit: ClaimedUnit) -> Finished:
        started = _now_iso()
        prompt = target.cstep.try_render(unit.unit_id, unit.record)
        if isinstance(prompt, StepFailure):
            return Finished(
                target,
                unit,
                self._attempt_record(
                    target, "failed", started, stage="render", errors=list(prompt.errors)
                ),
                failure=prompt,
            )
        request = LLMRequest(
            unit_id=unit.unit_id, step=target.cstep.name, prompt=prompt, **target.request_defaults
        )
        try:
            response = await self._call(target, request)
        except ProviderError as exc:
            return self._provider_failure(target, unit, prompt, started, exc)
        result = target.cstep.check_answer(response.text, unit.record)
        cost = cost_usd(
            self.registry, target.price_provider, target.model, response.usage, "realtime"
        )
        attempt = self._attempt_record(
            target,
            "valid" if result.ok else "failed",
            started,
            response=response,
            request=prompt if not result.ok else None,
            cost=cost,
            stage=cast(Stage, result.failure.stage) if result.failure else None,
            errors=list(result.failure.errors) if result.failure else list(result.warnings),
        )
        return Finished(target, unit, attempt, result.delta, result.failure)

    async def _call(self, target: StepTarget, request: LLMRequest) -> LLMResponse:
        """One request with in-call retries for rate limits and transient errors."""
        delay = self.retry.initial_delay_seconds
        for attempt in range(1, self.retry.max_attempts + 1):
            await target.pacer.wait_turn(estimate_tokens(request.prompt) + request.max_tokens // 4)
            t0 = time.monotonic()
            try:
                response = await self._send(target, request)
            except RateLimited as exc:
                target.pacer.on_rate_limited(exc.retry_after)
                self._trace(target, request, t0, status=429)
                if attempt == self.retry.max_attempts:
                    raise
                await asyncio.sleep(max(exc.retry_after or 0.0, delay))
            except TransientProviderError as exc:
                self._trace(target, request, t0, status=exc.status or "transient")
                if attempt == self.retry.max_attempts:
                    raise
                await asyncio.sleep(delay)
            except ProviderError as exc:  # bad request, auth, quota: traced like every call
                self._trace(target, request, t0, status=exc.status or type(exc).__name__)
                raise
            else:
                target.pacer.on_success()
                self._trace(target, request, t0, status=200, response=response)
                return response
            delay = min(delay * self.retry.backoff_multiplier, self.retry.max_delay_seconds)
        raise AssertionError("unreachable")

    async def _send(self, target: StepTarget, request: LLMRequest) -> LLMResponse:
        task = asyncio.current_task()
        if task is not None:
            self.sending.add(task)
        try:
            return await target.client.complete(request)
        finally:
            self.sending.discard(task)

    def _provider_failure(
        self, target: StepTarget, unit: ClaimedUnit, prompt: str, started: str, exc: ProviderError
    ) -> Finished:
        errors = [{"type": type(exc).__name__, "status": exc.status, "message": exc.message}]
        failure = StepFailure(
            "provider",
            exc.message,
            tuple(errors),
            retryable=isinstance(exc, TransientProviderError | RateLimited),
        )
        attempt = self._attempt_record(
            target, "error", started, stage="provider", errors=errors, request=prompt
        )
        stop = exc.message if exc.fatal_for_run else None
        return Finished(target, unit, attempt, failure=failure, stop_reason=stop)

    def _attempt_record(
        self,
        target: StepTarget,
        outcome: Outcome,
        started: str,
        *,
        response: LLMResponse | None = None,
        request: str | None = None,
        cost: float | None = None,
        stage: Stage | None = None,
        errors: list[Any] | None = None,
    ) -> AttemptRecord:
        usage = response.usage if response is not None else None
        return AttemptRecord(
            outcome=outcome,
            mode="realtime",
            provider=target.provider,
            model=target.model,
            stage=stage,
            errors=errors or [],
            request=request,
            response=response.text if response is not None else None,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cached_tokens=usage.cached_input_tokens if usage else 0,
            cost_usd=cost if response is not None else 0.0,
            latency_ms=round(response.latency_s * 1000) if response is not None else None,
            started_at=started,
            finished_at=_now_iso(),
        )

    # --- recording ---------------------------------------------------------------------------------

    def _record_finished(self) -> bool:
        if not self.done:
            return False
        finished, self.done = self.done, []
        ledger = self.ctx.ledger
        with ledger.transaction():
            for target in self.targets:
                mine = [f for f in finished if f.target is target]
                if mine:
                    self._record_step(target, mine)
        for item in finished:
            self.spent += item.attempt.cost_usd or 0.0
            self.calls_priced += item.attempt.cost_usd is not None
            if item.stop_reason:
                self.ctx.log.write("PAUSE", f"{item.target.provider}: {item.stop_reason}")
                self.ctx.request_stop(item.stop_reason)
        return True

    def _record_step(self, target: StepTarget, items: list[Finished]) -> None:
        ledger = self.ctx.ledger
        successes = [
            Success(f.unit.uid, f.delta or {}, f.attempt) for f in items if f.failure is None
        ]
        failures = []
        for f in items:
            if f.failure is None or f.stop_reason:
                continue
            used = f.unit.budget_used + 1
            terminal = not f.failure.retryable or used >= self.max_attempts
            failures.append(Failure(f.unit.uid, f.attempt, terminal))
        if successes:
            ledger.record_successes(target.index, successes)
        if failures:
            ledger.record_failures(target.index, failures)
        stopped = [f for f in items if f.stop_reason]
        if stopped:  # not the unit's fault: it goes back to pending, no attempt used
            ledger.release_units(target.index, [f.unit.uid for f in stopped])
        if self.auto_retry and failures:
            ledger.requeue_failed(
                step_idx=target.index, include_exhausted=False, reset_budget=False
            )
        if self.ctx.compiled.pipeline.config.schemas.log_validation_errors:
            for f in items:
                if f.failure is not None and f.failure.stage in ("parse", "schema", "rules"):
                    self.ctx.log.write(
                        "VALIDATE",
                        f"{f.unit.unit_id} @ {target.cstep.name}: "
                        f"{f.failure.stage}: {f.failure.message}",
                    )

    def _check_limits(self) -> bool:
        calls = max(1, self.calls_priced)
        projected = self.spent + len(self.tasks) * (self.spent / calls) + self.committed_elsewhere()
        if self.cost_cap is not None and projected >= self.cost_cap:
            self.ctx.request_stop(
                f"cost cap {format_usd(self.cost_cap)} reached (spent {format_usd(self.spent)})"
            )
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


def default_concurrency(rpms: list[float]) -> int:
    """Calls in flight when none is configured: enough to reach the RPM limit at a latency of
    several seconds (a tenth of the limit: 1,200 rpm at 5 s latency needs 100), within bounds."""
    wanted = int(max(rpms, default=0) // 10)
    return max(DEFAULT_CONCURRENCY, min(MAX_DEFAULT_CONCURRENCY, wanted))


def _now_iso() -> str:
    from octopipe.store.codec import utc_now

    return utc_now()


__all__ = ["RealtimeExecutor", "RealtimeOptions"]
