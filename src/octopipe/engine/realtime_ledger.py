"""Writing finished realtime calls to the ledger without ever dropping one.

``RealtimeRecorder`` queues what the executor judged (calls to record, units to release
unused) and writes the queue in one transaction: successes (a unit's next step is pending at
once), failures (``failed`` for another attempt or ``exhausted``), the runner's own retry
round, releases. A write the ledger refuses (disk full, an I/O error) leaves the whole queue in
place, to be written again after a short backoff; after ``RECORD_TRIES`` refusals the caller
gets a ``StoreError`` that says how many finished calls, tokens and dollars are not recorded,
so the run stops with that reason instead of losing a paid answer silently. An answer whose
fields cannot be stored (``UnstorableValue``) fails alone, with its raw text kept.
"""

from __future__ import annotations

import dataclasses
import time

from octopipe.core.amounts import format_usd
from octopipe.engine.realtime_attempts import Finished, StepTarget
from octopipe.engine.runner import RunContext
from octopipe.errors import StoreError, UnstorableValue
from octopipe.store.records import Failure, Success

RECORD_TRIES = 3
"""Refused writes of the queue before the run stops on the ledger's error."""
RETRY_AFTER_S = 0.25


class RealtimeRecorder:
    def __init__(self, ctx: RunContext, auto_retry: bool) -> None:
        self.ctx = ctx
        self.auto_retry = auto_retry
        self.unwritten: list[Finished] = []  # judged, waiting for the ledger
        self.unreleased: list[Finished] = []  # units to return to pending, no attempt used
        self.failures = 0
        self._next_at = 0.0
        self._error: StoreError | None = None

    @property
    def waiting(self) -> bool:
        return bool(self.unwritten or self.unreleased)

    def flush(self, targets: list[StepTarget], *, now: bool = False) -> list[Finished] | None:
        """Write the queue; returns what was written, or ``None`` when nothing was (an empty
        queue, a backoff still running, a refused write). ``now``: skip the backoff."""
        if not self.waiting or (not now and time.monotonic() < self._next_at):
            return None
        record, release = self.unwritten, self.unreleased
        try:
            with self.ctx.ledger.transaction():
                for target in targets:
                    mine = [f for f in record if f.target is target]
                    if mine:
                        self._record_step(target, mine)
                    freed = [f.unit.uid for f in release if f.target is target]
                    if freed:  # not the unit's fault: back to pending, no attempt used
                        self.ctx.ledger.release_units(target.index, freed)
        except StoreError as exc:
            self._refused(exc)
            return None
        self.unwritten, self.unreleased = [], []
        self.failures = 0
        return [*record, *release]

    def unrecorded_error(self) -> StoreError:
        cost = sum(f.attempt.cost_usd or 0.0 for f in self.unwritten)
        tokens = sum(f.attempt.input_tokens + f.attempt.output_tokens for f in self.unwritten)
        detail = self._error.message if self._error is not None else "the ledger refused it"
        return StoreError(
            f"{len(self.unwritten)} finished call(s) could not be recorded in the ledger "
            f"({tokens:,} tokens, {format_usd(cost)} of usage not counted; their units will "
            f"be sent again on resume): {detail}"
        )

    def _refused(self, exc: StoreError) -> None:
        self.failures += 1
        self._error = exc
        self._next_at = time.monotonic() + RETRY_AFTER_S * 2**self.failures
        self.ctx.log.write(
            "ERROR",
            f"cannot record {len(self.unwritten)} finished call(s) in the ledger "
            f"(try {self.failures}/{RECORD_TRIES}): {exc.message}",
        )
        if self.failures >= RECORD_TRIES:
            raise self.unrecorded_error()

    def _record_step(self, target: StepTarget, items: list[Finished]) -> None:
        ledger = self.ctx.ledger
        successes = [
            Success(f.unit.uid, f.delta or {}, f.attempt) for f in items if f.failure is None
        ]
        failures = [
            Failure(f.unit.uid, f.attempt, f.terminal) for f in items if f.failure is not None
        ]
        if successes:
            failures += self._record_successes(target, successes)
        if failures:
            ledger.record_failures(target.index, failures)
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

    def _record_successes(self, target: StepTarget, successes: list[Success]) -> list[Failure]:
        """Record valid answers; one whose output cannot be stored fails alone (returned)."""
        ledger = self.ctx.ledger
        try:
            with ledger.transaction():
                ledger.record_successes(target.index, successes)
            return []
        except UnstorableValue:
            pass
        failed = []
        for success in successes:
            try:
                with ledger.transaction():
                    ledger.record_successes(target.index, [success])
            except UnstorableValue as exc:
                assert success.attempt is not None  # every realtime call has its attempt
                attempt = dataclasses.replace(
                    success.attempt,
                    outcome="failed",
                    stage="parse",
                    errors=[{"message": exc.message}],
                )
                failed.append(Failure(success.uid, attempt, terminal=True))
        return failed


__all__ = ["RECORD_TRIES", "RealtimeRecorder"]
