"""Local steps, a chunk at a time: computed in memory, then recorded in one transaction.

``run_local_chunk`` reads up to ``LOCAL_CHUNK`` pending units of a local step (expression or
fan-out) and computes them for at most ``LOCAL_SLICE_S`` with no write lock held, carrying each
unit on through the expression steps right after it (``local_chains``) in the same pass. Then
it claims and records every step of every computed unit in one transaction: units that passed
every step with nothing to keep but their outputs in their final form
(``RunStore.record_clean_walks``), the others step by step. A crash at any instant leaves each
unit either untouched (pending) or recorded at every step it went through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from octopipe.core.budget import Budget
from octopipe.core.config_models import ExpressionStep, FanOutStep
from octopipe.core.steps import CompiledPipeline, CompiledStep, StepResult
from octopipe.errors import EvaluationCancelled, UnstorableValue
from octopipe.store import RunStore
from octopipe.store.codec import dumps, parse
from octopipe.store.records import AttemptRecord, ClaimedUnit, CleanWalk, Failure, Success

LOCAL_CHUNK = 1_000
LOCAL_SLICE_S = 0.5


@dataclass
class ChunkOutcome:
    """What one chunk of local steps did: units that passed its first step (valid or failed
    there or further on), and per step index how many of them reached that step's
    ``max_iterations``."""

    done: int = 0
    hits: dict[int, int] = field(default_factory=dict)


@dataclass
class _Walk:
    """One unit's way through a chunk's steps: per step reached, its result, its output as
    the ledger's JSON (successes) and the attempt row to keep (if any). Only the last step
    reached may have failed."""

    unit: ClaimedUnit
    results: list[StepResult] = field(default_factory=list)
    encoded: list[str | None] = field(default_factory=list)
    attempts: list[AttemptRecord | None] = field(default_factory=list)


def local_chains(compiled: CompiledPipeline) -> dict[int, tuple[CompiledStep, ...]]:
    """For each local step, the expression steps right after it that a chunk carries its units
    through in the same pass (none after a fan-out step, none past an LLM step)."""
    steps = compiled.steps
    chains: dict[int, tuple[CompiledStep, ...]] = {}
    for index, cstep in enumerate(steps):
        if cstep.is_llm:
            continue
        then: list[CompiledStep] = []
        if isinstance(cstep.step, ExpressionStep):
            for later in steps[index + 1 :]:
                if not isinstance(later.step, ExpressionStep):
                    break
                then.append(later)
        chains[index] = tuple(then)
    return chains


def run_local_chunk(
    ledger: RunStore,
    index: int,
    cstep: CompiledStep,
    limit: int,
    *,
    then: Sequence[CompiledStep] = (),
    stop_requested: Callable[[], bool] | None = None,
    slice_s: float = LOCAL_SLICE_S,
) -> ChunkOutcome:
    """Compute up to ``limit`` pending units of a local step, for at most about ``slice_s``
    seconds, carrying each unit that passes on through the expression steps ``then`` (the
    steps right after it) in the same pass, then claim and record every step of every unit
    in one transaction.

    A step reads the record its predecessor produced in memory, decoded from the very JSON
    that is stored, so it sees what it would have read from the ledger. Nothing is written
    while the units compute, so other processes can queue commands meanwhile; a crash leaves
    each unit either untouched (pending at ``index``) or recorded at every step it went
    through. When ``stop_requested()`` turns true the chunk stops at once, even inside a
    unit's expressions (its budget is cancelled): that unit stays pending, the ones computed
    before it are recorded.
    """
    pending = ledger.peek_pending(index, limit)
    if not pending:
        return ChunkOutcome()
    steps = (cstep, *then) if isinstance(cstep.step, ExpressionStep) else (cstep,)
    walks: list[_Walk] = []
    deadline = time.monotonic() + slice_s
    for unit in pending:
        if walks and (time.monotonic() > deadline or (stop_requested and stop_requested())):
            break
        try:
            walks.append(_walk(index, steps, unit, stop_requested))
        except EvaluationCancelled:
            break
    if walks:
        _record_walks(ledger, index, steps, walks)
    hits: dict[int, int] = {}
    for walk in walks:
        for offset, result in enumerate(walk.results):
            if result.info.get("hit_max_iterations"):
                hits[index + offset] = hits.get(index + offset, 0) + 1
    return ChunkOutcome(len(walks), hits)


def _walk(
    index: int,
    steps: Sequence[CompiledStep],
    unit: ClaimedUnit,
    stop_requested: Callable[[], bool] | None,
) -> _Walk:
    walk = _Walk(unit)
    first = steps[0]
    if isinstance(first.step, FanOutStep):
        result = first.fan_out(unit.unit_id, unit.record)
        walk.results.append(result)
        walk.encoded.append(None)
        walk.attempts.append(None if result.ok else _failure_attempt(result))
        return walk
    record = unit.record
    for offset, cstep in enumerate(steps):
        result = cstep.run_expression(unit.unit_id, record, Budget(cancelled=stop_requested))
        walk.results.append(result)
        if not result.ok:
            walk.encoded.append(None)
            walk.attempts.append(_failure_attempt(result))
            return walk
        try:
            text = dumps(
                dict(result.delta or {}),
                what=f"output of unit {unit.uid} at step {index + offset}",
            )
        except UnstorableValue as exc:  # the unit fails alone, at this step
            walk.encoded.append(None)
            walk.attempts.append(
                AttemptRecord(
                    outcome="failed",
                    mode="local",
                    stage="expression",
                    errors=[{"message": exc.message}],
                )
            )
            return walk
        walk.encoded.append(text)
        walk.attempts.append(_local_attempt(result))
        if offset + 1 < len(steps):
            record = {**record, **parse(text)}
    return walk


def _record_walks(
    ledger: RunStore, index: int, steps: Sequence[CompiledStep], walks: list[_Walk]
) -> None:
    """Claim and record each step of the computed units, step after step, in one
    transaction: each unit is pending at ``index`` or recorded at every step it reached.
    Clean walks (every step passed, no attempt to keep) are written in their final form in
    one write per unit and step (``record_clean_walks``); the others step by step."""
    clean, walks = _split_clean(walks, len(steps))
    with ledger.transaction():
        ledger.record_clean_walks(index, clean)
        for offset, cstep in enumerate(steps):
            step_idx = index + offset
            here = [w for w in walks if len(w.results) > offset]
            if not here:
                break
            if offset == 0:  # later steps: entered claimed by the step before
                ledger.claim_units(step_idx, [w.unit.uid for w in here])
            successes: list[Success] = []
            failures: list[Failure] = []
            for w in here:
                result, text, attempt = w.results[offset], w.encoded[offset], w.attempts[offset]
                if result.ok and isinstance(cstep.step, FanOutStep):
                    ledger.add_children(w.unit.uid, step_idx, list(result.children))
                elif text is not None:
                    successes.append(Success(w.unit.uid, result.delta or {}, attempt, text))
                else:
                    assert attempt is not None
                    failures.append(Failure(w.unit.uid, attempt, terminal=True))
            if successes:
                # every unit that passes a step of the chunk but its last goes on to the next
                last = offset + 1 == len(steps)
                ledger.record_successes(step_idx, successes, claim_next=not last)
            if failures:
                ledger.record_failures(step_idx, failures)
            hits = [
                w.unit.unit_id for w in here if w.results[offset].info.get("hit_max_iterations")
            ]
            if hits:
                ledger.log_event(
                    "warning",
                    "MAX_ITERATIONS",
                    f"{len(hits)} unit(s) reached max_iterations at step {step_idx}",
                    {"step": step_idx, "units": len(hits), "first": hits[0]},
                )


def _split_clean(walks: list[_Walk], depth: int) -> tuple[list[CleanWalk], list[_Walk]]:
    """The walks that passed all ``depth`` steps with nothing to keep but their outputs (no
    fan-out, no attempt row), as ``CleanWalk``; and the others, to record step by step."""
    clean: list[CleanWalk] = []
    others: list[_Walk] = []
    for walk in walks:
        outputs = [text for text in walk.encoded if text is not None]
        if len(outputs) == depth and all(attempt is None for attempt in walk.attempts):
            clean.append(CleanWalk(walk.unit.uid, tuple(outputs)))
        else:
            others.append(walk)
    return clean, others


def _failure_attempt(result: StepResult) -> AttemptRecord:
    attempt = _local_attempt(result)
    assert attempt is not None
    return attempt


def _local_attempt(result: StepResult) -> AttemptRecord | None:
    """Successes of local steps leave no attempt row (they are free and reproducible) unless
    they carry warnings or loop information; failures always keep their errors."""
    if result.failure is not None:
        return AttemptRecord(
            outcome="failed",
            mode="local",
            stage=result.failure.stage,  # type: ignore[arg-type]
            errors=[*result.failure.errors, {"message": result.failure.message, **result.info}],
        )
    if result.warnings or result.info.get("hit_max_iterations"):
        return AttemptRecord(outcome="valid", mode="local", errors=[*result.warnings, result.info])
    return None
