"""Submitting batches: pack claimed units, record the intent, call the provider, record its id.

The steps (``engine.batch`` has the whole life of a batch):

- *pack*: claim pending units of a step, render their prompts (a unit whose prompt cannot be
  rendered fails at once, stage ``render``), keep as many as the batch limits allow and release
  the rest, all before anything is sent;
- *intent*: one durable commit records the batch (local id, units, content hash, estimated
  cost); the cost cap is checked first, counting every batch still open at its estimate;
- *submit*: the call runs as its own task. Success records the provider's id at once. A 429
  abandons the intent (its units go back to pending, no attempt used); auth and quota errors
  pause the run with the reason; a refused batch (400) puts its units back and pauses the
  run; a timeout or 5xx leaves the intent for ``reconcile`` (the batch may exist).

``BatchSubmitter`` is the batch executor's collaborator for this: it owns what submission
needs to remember (the batch on the wire, the steps where retries may be waiting, the last
estimate the cap refused) and tells the executor what came of each submit (``Submitted``);
when to look at a step again is the planner's (``engine.batch_plan``) and the executor's.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from octopipe.core.amounts import format_usd
from octopipe.core.states import BatchEvent
from octopipe.core.steps import StepFailure
from octopipe.engine.batch_collect import custom_id
from octopipe.engine.batch_packing import BatchLimits, CostModel, pack, request_bytes
from octopipe.engine.cost_budget import Admission, CostBudget
from octopipe.engine.routes import StepRoute
from octopipe.engine.runlog import Trace
from octopipe.engine.runner import RunContext
from octopipe.errors import EXIT_PROVIDER, BadRequest, ProviderError, RateLimited
from octopipe.providers.base import LLMRequest
from octopipe.providers.batch_base import INTENT_KEY, BatchProvider, BatchRequestLine
from octopipe.store.codec import utc_now
from octopipe.store.records import AttemptRecord, BatchRow, ClaimedUnit, Failure


class BatchClients:
    """One batch adapter per provider, made the first time it is asked for."""

    def __init__(self, make: Callable[[str], BatchProvider]) -> None:
        self._make = make
        self._made: dict[str, BatchProvider] = {}

    def __call__(self, provider: str) -> BatchProvider:
        if provider not in self._made:
            self._made[provider] = self._make(provider)
        return self._made[provider]

    def made(self) -> list[BatchProvider]:
        return list(self._made.values())


def trace_op(trace: Trace, op: str, row: BatchRow, t0: float, **fields: Any) -> None:
    """One line of the run's trace for an operation on a batch begun at ``t0``."""
    trace.write(
        kind="batch",
        op=op,
        batch=row.local_id,
        provider=row.provider,
        model=row.model,
        latency_ms=round((time.monotonic() - t0) * 1000),
        **fields,
    )


class Outcome(StrEnum):
    SUBMITTED = "submitted"  # the provider took it: poll it
    RATE_LIMITED = "rate_limited"  # abandoned, units pending again: back the step off
    UNCERTAIN = "uncertain"  # a timeout or 5xx: the batch may exist, look for it
    STOPPED = "stopped"  # abandoned and the run asked to pause (refused, auth, quota)


@dataclass(frozen=True)
class Submitted:
    """What came of one submit."""

    outcome: Outcome
    retry_after: float | None = None


@dataclass(frozen=True)
class Packed:
    """A batch intent recorded and ready to send (``lines``), or none (``row`` is ``None``);
    ``progressed``: something was recorded (an intent, or units that could not be rendered)."""

    row: BatchRow | None
    lines: list[BatchRequestLine]
    progressed: bool


class BatchSubmitter:
    """Packs batches of a step and submits them (see the module doc)."""

    def __init__(
        self,
        ctx: RunContext,
        budget: CostBudget,
        costs: CostModel,
        limits: dict[int, BatchLimits],
        tag: str,
        clients: Callable[[str], BatchProvider],
        trace: Trace,
    ) -> None:
        self.ctx = ctx
        self.budget = budget
        self.costs = costs
        self.limits = limits
        self.tag = tag
        self.clients = clients
        self.trace = trace
        self.submitting: dict[str, int] = {}  # batches on the wire -> bytes of requests
        self._retries_waiting: dict[int, bool] = {}  # step -> units with an attempt may wait
        self._budget_blocked: tuple[float, int] | None = None
        self._fresh_estimates = 0.0  # batches created since the open batches were counted
        self._token = secrets.token_hex(4)
        self._seq = len(ctx.ledger.batches()) + 1

    def open_batches_read(self) -> None:
        """The executor has just read the open batches (they include every intent made)."""
        self._fresh_estimates = 0.0

    def retries_may_wait(self, step: int) -> None:
        """Units of ``step`` with an attempt used may be pending again (a batch ended)."""
        self._retries_waiting[step] = True

    # --- pack ------------------------------------------------------------------------------------

    def pack(self, route: StepRoute, open_batches: int) -> Packed:
        """Claim, render and pack the next batch of ``route``'s step and record its intent, if
        the cost cap admits it (``open_batches``: batches not yet collected)."""
        ledger = self.ctx.ledger
        limits = self.limits[route.index]
        if self._budget_blocked == self._budget_state(open_batches):
            return Packed(None, [], False)  # the last batch did not fit; nothing has changed
        # Units retried after a failed answer go into batches of their own, as Octobatch's retry
        # chunks did; first attempts fill the others. Looking for retries scans the step's
        # pending units, so it is done only when some may be waiting (after a batch ended).
        claimed = []
        if self._retries_waiting.get(route.index, True):
            claimed = ledger.claim_pending(route.index, limits.max_requests, retries=True)
            if len(claimed) < limits.max_requests:
                self._retries_waiting[route.index] = False
        if not claimed:
            claimed = ledger.claim_pending(route.index, limits.max_requests, retries=False)
        if not claimed:
            self._retries_waiting[route.index] = True  # pending units exist: look everywhere
            return Packed(None, [], False)
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
        if not self._within_budget(estimate, open_batches):
            taken, left = [], [u.uid for u, _ in ok]
            self._budget_blocked = self._budget_state(open_batches)
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
            return Packed(None, [], bool(broken))
        self._fresh_estimates += estimate or 0.0
        self.budget.hold_batch(estimate or 0.0)
        lines = [BatchRequestLine(custom_id(self.tag, u.uid), r) for u, r in taken]
        self.submitting[row.local_id] = sum(sizes[: len(taken)])
        return Packed(row, lines, True)

    # --- submit ----------------------------------------------------------------------------------

    async def submit(
        self, route: StepRoute, row: BatchRow, lines: list[BatchRequestLine]
    ) -> Submitted:
        """Send a packed batch (``pack``) and record what came of it."""
        try:
            return await self._submit_call(route, row, lines)
        finally:
            self.submitting.pop(row.local_id, None)

    async def _submit_call(
        self, route: StepRoute, row: BatchRow, lines: list[BatchRequestLine]
    ) -> Submitted:
        client = self.clients(route.provider)
        ledger = self.ctx.ledger
        t0 = time.monotonic()
        try:
            handle = await client.submit(
                lines, model=route.model, metadata={INTENT_KEY: row.local_id}
            )
        except RateLimited as exc:
            self._abandon(row, f"rate limited on submit ({exc.message})")
            trace_op(self.trace, "submit", row, t0, status=429)
            return Submitted(Outcome.RATE_LIMITED, exc.retry_after)
        except BadRequest as exc:
            # The provider refused the batch as a whole (a model without batch support, a
            # file over its limits): not the units' fault, and every next batch would meet
            # the same refusal. The units go back to pending and the run pauses with why.
            trace_op(self.trace, "submit", row, t0, status=exc.status or "bad_request")
            reason = f"{route.provider} refused a batch for step {route.cstep.name}: {exc.message}"
            self._abandon(row, exc.message)
            self.ctx.log.write("PAUSE", reason)
            self.ctx.request_stop(reason, exit_code=EXIT_PROVIDER)
            return Submitted(Outcome.STOPPED)
        except ProviderError as exc:
            trace_op(self.trace, "submit", row, t0, status=exc.status or type(exc).__name__)
            if exc.fatal_for_run:
                self._abandon(row, exc.message)
                self.ctx.log.write("PAUSE", f"{route.provider}: {exc.message}")
                self.ctx.request_stop(exc.message, exit_code=exc.exit_code)
                return Submitted(Outcome.STOPPED)
            # A timeout or 5xx: the batch may or may not exist. Look for it a little later.
            self.ctx.log.write(
                "SUBMIT", f"batch {row.local_id}: {exc.message}; checking with the provider"
            )
            return Submitted(Outcome.UNCERTAIN)
        ledger.advance_batch(
            row.local_id,
            BatchEvent.SUBMIT_OK,
            provider_batch_id=handle.provider_batch_id,
            provider_status="submitted",
        )
        estimate = "" if row.estimate_usd is None else f", est. {format_usd(row.estimate_usd)}"
        self.ctx.log.write(
            "SUBMIT",
            f"batch {row.local_id} -> {route.provider} {handle.provider_batch_id}: "
            f"{len(lines):,} requests to {route.model} for step {route.cstep.name}{estimate}",
        )
        trace_op(
            self.trace, "submit", row, t0, status=200, provider_batch_id=handle.provider_batch_id
        )
        return Submitted(Outcome.SUBMITTED)

    def _abandon(self, row: BatchRow, reason: str) -> None:
        self.ctx.ledger.advance_batch(row.local_id, BatchEvent.RECONCILE_MISSING, error=reason)
        self.retries_may_wait(row.step_idx)
        self.ctx.log.write("THROTTLE", f"batch {row.local_id} not submitted: {reason}")

    # --- helpers -----------------------------------------------------------------------------

    def _new_local_id(self) -> str:
        local_id = f"b{self._seq:05d}-{self._token}"
        self._seq += 1
        return local_id

    def _budget_state(self, open_batches: int) -> tuple[float, int]:
        return (self.budget.spent, open_batches)

    def _within_budget(self, estimate: float | None, open_batches: int) -> bool:
        admission = self.budget.admits(estimate)
        if admission is Admission.FITS:
            return True
        if admission is Admission.UNPRICED:
            self.ctx.request_stop(self.budget.unpriced_reason())
        elif not open_batches and not self._fresh_estimates and not self.submitting:
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
