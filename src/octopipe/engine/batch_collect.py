"""A provider batch's results into the ledger: every line checked, priced and recorded.

Guarantees:

- Results are recorded in slices (``COLLECT_SLICE`` lines per transaction), each line joined to
  its unit by ``custom_id`` (``<run tag>-u<uid>``). Only units still ``in_flight`` at the step are
  recorded, so collecting a batch again after a crash half-way records each unit once.
- An answer is judged exactly as in realtime (``core.judge``: parse, schema, rules, and
  whether a failure ends the unit) and priced at *batch* rates from what the line reports it
  used. A line that failed at the provider is a failed
  attempt (retryable by its error type); a request that never ran (batch expired or cancelled)
  goes back to pending without using an attempt.
- ``finish`` deals with every unit the results did not mention: for a completed batch that is a
  *dropped* line, recorded as a retryable failure, never a silent loss; for an expired or
  cancelled batch the unit is simply returned to pending; for a failed batch each unit records
  the batch's error against its retry budget. Then the batch is marked collected and the
  units with budget left are queued for the next batch, in the same transaction.
- ``finish`` is called only on complete results. A download that came back incomplete
  (``errors.IncompleteResults``) leaves the batch open -- what it held is recorded, the rest
  of its units stay in flight -- and the planner (``batch_plan.after_cut_download``) decides:
  fetch again after a backoff, take the results as complete (a download that looked short
  came back the same), or, after ``DOWNLOAD_TRIES`` cut downloads in a row, pause the run
  with the reason. A line
  the provider answered and charged is never resubmitted because a download lost it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from octopipe.core.costs import PriceCatalog, Tier, TieredRates
from octopipe.core.deferred import DeferredRecord
from octopipe.core.judge import PriceList, Verdict, judge_answer, judge_error, judge_missing
from octopipe.core.registry import Registry
from octopipe.core.states import BatchEvent, BatchState
from octopipe.engine.attempts import attempt_of, attempts_of
from octopipe.engine.batch_packing import CostModel
from octopipe.engine.routes import StepRoute
from octopipe.engine.runner import RunContext
from octopipe.providers.batch_base import BatchResultLine
from octopipe.store import RunStore
from octopipe.store.codec import utc_now
from octopipe.store.records import (
    AttemptRecord,
    BatchRow,
    ClaimedUnit,
    Failure,
    Json,
    Success,
)

COLLECT_SLICE = 2_000
NOT_RUN = frozenset({"cancelled", "expired"})
LOST = "not found"  # provider_status of a batch the provider no longer knows
# Line errors that say the account cannot be used (as in realtime, they pause the run).
FATAL_FOR_RUN = frozenset({"AuthError", "QuotaExhausted", "MissingApiKey"})


def request_time(stamp: str | None) -> datetime | None:
    """When a batch's requests were made (its prices are those of that moment); ``None``:
    unknown, priced at today's prices."""
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def run_tag(run_name: str, created_at: str) -> str:
    """Eight characters naming a run in its requests' ids, so that the lines of another run's
    batch (adopted by mistake, or listed by a provider) never join this run's units."""
    return hashlib.sha256(f"{run_name}\0{created_at}".encode()).hexdigest()[:8]


def custom_id(tag: str, uid: int) -> str:
    return f"{tag}-u{uid}"


def uid_of(tag: str, custom: str) -> int | None:
    head, _, number = custom.partition("-u")
    if head == tag and number.isdigit():
        return int(number)
    return None


class MemoRates:
    """``catalog``'s rates, looked up once per (provider, model, tier, time) and then reused.

    A batch's answers are all priced as of the batch's submission, so the catalog search
    (price file, database, derived batch discount) is done once per batch instead of twice a
    line. The catalog is read-only during a run, so the answers are the same. At most
    ``MEMO_SIZE`` keys are kept (answers priced \"now\" each have their own time)."""

    MEMO_SIZE = 256

    def __init__(self, catalog: PriceCatalog) -> None:
        self._catalog = catalog
        self._memo: dict[tuple[str, str, Tier, datetime | None], TieredRates | None] = {}

    def rates(
        self, provider: str, model: str, tier: Tier, at: datetime | None = None
    ) -> TieredRates | None:
        key = (provider, model, tier, at)
        if key in self._memo:
            return self._memo[key]
        if at is None:  # \"now\": never reused
            return self._catalog.rates(provider, model, tier, at)
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        found = self._memo[key] = self._catalog.rates(provider, model, tier, at)
        return found


@dataclass
class Tally:
    """What one collection recorded (for the log and the money counters)."""

    valid: int = 0
    failed: int = 0
    returned: int = 0  # back to pending without an attempt (never ran)
    dropped: int = 0
    foreign: int = 0  # lines whose id is not one of this run's requests
    stop_reason: str | None = None  # a line said the account cannot be used
    lost: bool = False  # the results could not be downloaded any more (404)
    requeued: int = 0  # failed units sent back to pending when the batch was closed

    def released_any(self, state: BatchState) -> bool:
        """Whether closing the batch may have put units with an attempt back to pending."""
        ended_early = state in (BatchState.EXPIRED, BatchState.CANCELLED, BatchState.FAILED)
        return bool(self.requeued or self.returned or self.lost or ended_early)

    cost_usd: float = 0.0
    unpriced: int = 0
    seen: set[int] = field(default_factory=set)

    def line(self) -> str:
        parts = [f"{self.valid:,} valid", f"{self.failed:,} failed"]
        if self.returned:
            parts.append(f"{self.returned:,} not run (requeued)")
        if self.dropped:
            parts.append(f"{self.dropped:,} missing from the results (retried)")
        if self.foreign:
            parts.append(f"{self.foreign:,} lines not from this run (ignored)")
        return ", ".join(parts)


class BatchRecorder:
    """Records the results of the batches of one LLM step."""

    def __init__(
        self,
        ctx: RunContext,
        route: StepRoute,
        registry: Registry,
        max_attempts: int,
        costs: CostModel,
        tag: str,
    ) -> None:
        self.ctx = ctx
        self.tag = tag
        self.route = route
        self.registry = registry
        self.max_attempts = max_attempts
        self.costs = costs
        self.price = PriceList(MemoRates(registry), route.price_provider, route.model, "batch")
        """Batch rates; each batch's answers are priced as of its submission (``record``)."""

    def record(self, batch: BatchRow, lines: Sequence[BatchResultLine], tally: Tally) -> None:
        """One slice of result lines, in one transaction."""
        by_uid: dict[int, BatchResultLine] = {}
        price = self.price.requested_at(request_time(batch.submitted_at or batch.created_at))
        for line in lines:
            uid = uid_of(self.tag, line.custom_id)
            if uid is None:
                tally.foreign += 1
            elif uid not in tally.seen:
                by_uid[uid] = line
                tally.seen.add(uid)
        ledger = self.ctx.ledger
        units = ledger.in_flight(self.route.index, list(by_uid))
        inputs = SliceInputs(ledger, self.route.index, [u.uid for u in units])
        now = utc_now()  # the slice's attempts ended when their results were read
        successes: list[Success] = []
        failures: list[Failure] = []
        for unit in units:
            line = by_uid[unit.uid]
            attempts = attempts_of(unit, self.max_attempts)
            if line.response is None:
                assert line.error is not None
                if line.error.type in NOT_RUN:  # stays claimed until the batch ends (finish)
                    tally.returned += 1
                    continue
                if line.error.type in FATAL_FOR_RUN:  # our access, not the unit: no attempt
                    tally.returned += 1
                    tally.stop_reason = tally.stop_reason or line.error.message
                    continue
                error = line.error
                verdict = judge_error(
                    error.type, error.status, error.message, error.retryable, attempts
                )
            else:
                response = line.response
                verdict = judge_answer(
                    self.route.cstep, inputs.record(unit.uid), response.text, response.usage,
                    price, attempts,
                )  # fmt: skip
                inputs.reraise()
                self.costs.observe(response.usage.output_tokens)
                if verdict.cost_usd is None:
                    tally.unpriced += 1
                else:
                    tally.cost_usd += verdict.cost_usd
            prompt = self._prompt(*inputs.unit(unit.uid)) if verdict.keeps_prompt else None
            attempt = self._attempt(batch, verdict, prompt, now)
            if verdict.ok:
                successes.append(Success(unit.uid, verdict.delta or {}, attempt))
            else:
                failures.append(Failure(unit.uid, attempt, verdict.terminal))
        with ledger.transaction():
            if successes:
                ledger.record_successes(self.route.index, successes)
            if failures:
                ledger.record_failures(self.route.index, failures)
        tally.valid += len(successes)
        tally.failed += len(failures)

    def finish(self, batch: BatchRow, tally: Tally) -> BatchRow:
        """Account for the units the results did not mention, mark the batch collected and
        queue the units that failed with budget left.

        Requests that never ran (expired, cancelled) are still claimed: marking the batch
        collected returns them to pending, in the same transaction, without using an attempt.
        Units with no line at all in a completed or failed batch are recorded as failed
        attempts first, in slices (each its own transaction; a crash in between is resumed
        by collecting again, which skips what was recorded).
        """
        ledger = self.ctx.ledger
        # gone at the provider, or its results deleted: resent, as if never run
        lost = batch.provider_status == LOST or tally.lost
        if batch.state not in (BatchState.EXPIRED, BatchState.CANCELLED) and not lost:
            missing = [u for u in ledger.batch_units(batch.local_id) if u not in tally.seen]
            message = (
                f"the batch failed at the provider: {batch.error or 'no reason given'}"
                if batch.state is BatchState.FAILED
                else "the provider's results had no line for this request (dropped)"
            )
            for start in range(0, len(missing), COLLECT_SLICE):
                units = ledger.in_flight_units(
                    self.route.index, missing[start : start + COLLECT_SLICE]
                )
                failures = [self._missing(batch, u, message) for u in units]
                with ledger.transaction():
                    ledger.record_failures(self.route.index, failures)
                tally.failed += len(failures)
                if batch.state is BatchState.COMPLETED:
                    tally.dropped += len(failures)
        event = (
            BatchEvent.COLLECT_OK if batch.state is BatchState.COMPLETED else BatchEvent.SALVAGE_OK
        )
        with ledger.durable_transaction():
            row = ledger.advance_batch(batch.local_id, event)
            tally.requeued = ledger.requeue_failed(
                step_idx=self.route.index, include_exhausted=False, reset_budget=False
            )
        return row

    # --- helpers -----------------------------------------------------------------------------

    def _attempt(
        self, batch: BatchRow, verdict: Verdict, prompt: str | None, now: str | None = None
    ) -> AttemptRecord:
        return attempt_of(
            verdict,
            mode="batch",
            provider=self.route.provider,
            model=self.route.model,
            prompt=prompt,
            started_at=batch.submitted_at or batch.created_at,
            batch_local_id=batch.local_id,
            finished_at=now,
        )

    def _missing(self, batch: BatchRow, unit: ClaimedUnit, message: str) -> Failure:
        verdict = judge_missing(message, attempts_of(unit, self.max_attempts))
        attempt = self._attempt(batch, verdict, self._prompt(unit.unit_id, unit.record))
        return Failure(unit.uid, attempt, verdict.terminal)

    def _prompt(self, unit_id: str, record: Json) -> str | None:
        """The unit's prompt, rendered again (kept with a failure for inspection)."""
        rendered = self.route.cstep.try_render(unit_id, record)
        return rendered if isinstance(rendered, str) else None


class SliceInputs:
    """The input records of one slice's units, read from the ledger (all at once) the first
    time one of them is read: `record` stands for a unit's record without reading it, and
    checking an answer whose fields hold all that its step's checks read never does."""

    def __init__(self, ledger: RunStore, step_idx: int, uids: Sequence[int]) -> None:
        self._ledger, self._step_idx, self._uids = ledger, step_idx, uids
        self._found: dict[int, tuple[str, Json]] | None = None
        self._error: Exception | None = None

    def unit(self, uid: int) -> tuple[str, Json]:
        """``(unit_id, record)``, read now if the slice's records are not read yet."""
        if self._found is None:
            try:
                self._found = self._ledger.inputs_of(self._step_idx, self._uids)
            except Exception as exc:  # a damaged record: the collection stops, as it did
                self._error = exc
                raise
        return self._found[uid]

    def reraise(self) -> None:
        """Raise the error reading the records met, if any: read while an answer was checked,
        it must stop the collection, not fail that unit (the judge catches what it calls)."""
        if self._error is not None:
            raise self._error

    def record(self, uid: int) -> DeferredRecord:
        return DeferredRecord(lambda: self.unit(uid)[1])
