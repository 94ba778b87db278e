"""Submitting batches: pack claimed units, record the intent, call the provider, record its id.

The steps (``engine.batch`` has the whole life of a batch):

- *pack*: claim pending units of a step, render their prompts (a unit whose prompt cannot be
  rendered fails at once, stage ``render``), keep as many as the batch limits allow and release
  the rest, all before anything is sent;
- *intent*: one durable commit records the batch (local id, units, content hash, estimated
  cost); the cost cap is checked first, counting every batch still open at its estimate;
- *submit*: the call runs as its own task. Success records the provider's id at once. A 429
  abandons the intent (its units go back to pending, no attempt used) and backs the step off;
  auth and quota errors pause the run with the reason; a refused batch (400) fails its units;
  a timeout or 5xx leaves the intent for ``reconcile`` (the batch may exist).

``SubmitMixin`` holds these methods for ``BatchExecutor``, which owns the state they use.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from octopipe.core.amounts import format_usd
from octopipe.core.states import BatchEvent
from octopipe.core.steps import StepFailure
from octopipe.engine.batch_collect import custom_id
from octopipe.engine.batch_packing import BatchLimits, CostModel, pack, request_bytes
from octopipe.engine.cost_budget import Admission, CostBudget
from octopipe.engine.routes import StepRoute
from octopipe.engine.runner import RunContext
from octopipe.errors import EXIT_PROVIDER, BadRequest, ProviderError, RateLimited
from octopipe.providers.base import LLMRequest
from octopipe.providers.batch_base import INTENT_KEY, BatchProvider, BatchRequestLine
from octopipe.store.codec import utc_now
from octopipe.store.records import AttemptRecord, BatchRow, ClaimedUnit, Failure

RECONCILE_AFTER_S = 5.0  # after an uncertain submit, look for the batch this much later


class SubmitMixin:
    """Packing and submission; the attributes below belong to ``BatchExecutor``."""

    ctx: RunContext
    api: Any
    limits: dict[int, BatchLimits]
    costs: CostModel
    budget: CostBudget
    live: list[BatchRow]
    submitting: dict[str, int]
    reconciling: set[str]
    retries_waiting: dict[int, bool]  # step -> units with an attempt may be pending
    step_backoff: dict[int, tuple[float, float]]
    timers: dict[str, Any]
    poll_s: float
    tag: str
    _fresh_estimates: float
    _budget_blocked: tuple[float, int] | None
    _seq: int
    _token: str
    _start: Callable[[str, Any], None]
    _client: Callable[[str], BatchProvider]
    _trace: Callable[..., None]
    _new_timer: Callable[..., Any]

    # --- submit ----------------------------------------------------------------------------------

    def _pack_and_submit(self, route: StepRoute) -> bool:
        ledger = self.ctx.ledger
        limits = self.limits[route.index]
        if self._budget_blocked == self._budget_state():
            return False  # the last batch did not fit the cap; nothing has changed since
        # Units retried after a failed answer go into batches of their own, as Octobatch's retry
        # chunks did; first attempts fill the others. Looking for retries scans the step's
        # pending units, so it is done only when some may be waiting (after a batch ended).
        claimed = []
        if self.retries_waiting.get(route.index, True):
            claimed = ledger.claim_pending(route.index, limits.max_requests, retries=True)
            if len(claimed) < limits.max_requests:
                self.retries_waiting[route.index] = False
        if not claimed:
            claimed = ledger.claim_pending(route.index, limits.max_requests, retries=False)
        if not claimed:
            self.retries_waiting[route.index] = True  # pending units exist: look everywhere
            return False
        ok: list[tuple[ClaimedUnit, LLMRequest]] = []
        broken: list[Failure] = []
        for unit in claimed:
            prompt = route.cstep.try_render(unit.unit_id, unit.record)
            if isinstance(prompt, StepFailure):
                broken.append(Failure(unit.uid, _render_failure(route, prompt), terminal=True))
                continue
            request = LLMRequest(
                unit_id=unit.unit_id, step=route.cstep.name, prompt=prompt, **route.request_defaults
            )
            ok.append((unit, request))
        sizes = [request_bytes(r) for _, r in ok]
        taken = ok[: pack(sizes, limits)]
        left = [u.uid for u, _ in ok[len(taken) :]]
        estimate = self.costs.estimate(route.price_provider, route.model, [r for _, r in taken])
        if not self._within_budget(estimate):
            taken, left = [], [u.uid for u, _ in ok]
            self._budget_blocked = self._budget_state()
        row = None
        with ledger.durable_transaction():
            if broken:
                ledger.record_failures(route.index, broken)
            if left:
                ledger.release_units(route.index, left)
            if taken:
                local_id = self._new_local_id()
                row = ledger.create_batch_intent(
                    local_id,
                    route.index,
                    provider=route.provider,
                    model=route.model,
                    uids=[u.uid for u, _ in taken],
                    content_hash=_content_hash(taken),
                    estimate_usd=estimate,
                )
        if row is None:
            return bool(broken)
        self._fresh_estimates += estimate or 0.0
        self.budget.hold_batch(estimate or 0.0)
        lines = [BatchRequestLine(custom_id(self.tag, u.uid), r) for u, r in taken]
        self.submitting[row.local_id] = sum(sizes[: len(taken)])
        self._start(row.local_id, self._submit(route, row, lines))
        return True

    async def _submit(self, route: StepRoute, row: BatchRow, lines: list[BatchRequestLine]) -> None:
        try:
            await self._submit_call(route, row, lines)
        finally:
            self.submitting.pop(row.local_id, None)

    async def _submit_call(
        self, route: StepRoute, row: BatchRow, lines: list[BatchRequestLine]
    ) -> None:
        client = self._client(route.provider)
        ledger = self.ctx.ledger
        t0 = time.monotonic()
        try:
            handle = await client.submit(
                lines, model=route.model, metadata={INTENT_KEY: row.local_id}
            )
        except RateLimited as exc:
            self._abandon(row, f"rate limited on submit ({exc.message})")
            self._back_off(route.index, exc.retry_after)
            self._trace("submit", row, t0, status=429)
            return
        except BadRequest as exc:
            # The provider refused the batch as a whole (a model without batch support, a
            # file over its limits): not the units' fault, and every next batch would meet
            # the same refusal. The units go back to pending and the run pauses with why.
            self._trace("submit", row, t0, status=exc.status or "bad_request")
            reason = f"{route.provider} refused a batch for step {route.cstep.name}: {exc.message}"
            self._abandon(row, exc.message)
            self.ctx.log.write("PAUSE", reason)
            self.ctx.request_stop(reason, exit_code=EXIT_PROVIDER)
            return
        except ProviderError as exc:
            self._trace("submit", row, t0, status=exc.status or type(exc).__name__)
            if exc.fatal_for_run:
                self._abandon(row, exc.message)
                self.ctx.log.write("PAUSE", f"{route.provider}: {exc.message}")
                self.ctx.request_stop(exc.message, exit_code=exc.exit_code)
                return
            # A timeout or 5xx: the batch may or may not exist. Look for it a little later.
            self.ctx.log.write(
                "SUBMIT", f"batch {row.local_id}: {exc.message}; checking with the provider"
            )
            self.timers[row.local_id] = self._new_timer(due=time.monotonic() + RECONCILE_AFTER_S)
            return
        ledger.advance_batch(
            row.local_id,
            BatchEvent.SUBMIT_OK,
            provider_batch_id=handle.provider_batch_id,
            provider_status="submitted",
        )
        self.step_backoff.pop(route.index, None)
        self.timers[row.local_id] = self._new_timer(
            due=time.monotonic() + self.poll_s, every=self.poll_s
        )
        estimate = "" if row.estimate_usd is None else f", est. {format_usd(row.estimate_usd)}"
        self.ctx.log.write(
            "SUBMIT",
            f"batch {row.local_id} -> {route.provider} {handle.provider_batch_id}: "
            f"{len(lines):,} requests to {route.model} for step {route.cstep.name}{estimate}",
        )
        self._trace("submit", row, t0, status=200, provider_batch_id=handle.provider_batch_id)

    def _abandon(self, row: BatchRow, reason: str) -> None:
        self.ctx.ledger.advance_batch(row.local_id, BatchEvent.RECONCILE_MISSING, error=reason)
        self.retries_waiting[row.step_idx] = True
        self.ctx.log.write("THROTTLE", f"batch {row.local_id} not submitted: {reason}")

    def _back_off(self, index: int, retry_after: float | None) -> None:
        retry = self.api.retry
        _, last = self.step_backoff.get(index, (0.0, 0.0))
        delay = min(
            max(retry.initial_delay_seconds, last * retry.backoff_multiplier),
            retry.max_delay_seconds,
        )
        delay = max(delay, retry_after or 0.0)
        self.step_backoff[index] = (time.monotonic() + delay, delay)

    def _new_local_id(self) -> str:
        local_id = f"b{self._seq:05d}-{self._token}"
        self._seq += 1
        return local_id

    def _budget_state(self) -> tuple[float, int]:
        return (self.budget.spent, len(self.live))

    def _within_budget(self, estimate: float | None) -> bool:
        admission = self.budget.admits(estimate)
        if admission is Admission.FITS:
            return True
        if admission is Admission.UNPRICED:
            self.ctx.request_stop(self.budget.unpriced_reason())
        elif not self.live and not self._fresh_estimates and not self.submitting:
            assert estimate is not None
            self.ctx.request_stop(self.budget.over_reason(estimate))  # nothing left to wait for
        return False


def _content_hash(taken: list[tuple[ClaimedUnit, LLMRequest]]) -> str:
    digest = hashlib.sha256()
    for unit, request in taken:
        digest.update(f"{unit.uid}\0{request.model}\0{request.prompt}\0".encode())
    return digest.hexdigest()


def _render_failure(route: StepRoute, failure: StepFailure) -> AttemptRecord:
    return AttemptRecord(
        outcome="failed",
        mode="batch",
        provider=route.provider,
        model=route.model,
        stage="render",
        errors=[*failure.errors, {"message": failure.message}],
        started_at=utc_now(),
    )
