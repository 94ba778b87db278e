"""The runner: the one process that drives a run, holding its lock, until every unit is terminal.

Decide, then act: each pass of the loop applies queued commands, runs a slice of every local
step that has pending units (expression and fan-out steps: read, computed for at most
``LOCAL_SLICE_S`` with no write lock held, each unit carried on through the expression steps
right after it in the same pass, then claimed and recorded step by step in one transaction,
so a crash at any instant leaves each unit either untouched or done and other processes can
queue commands meanwhile), and lets the LLM executor (realtime or batch, plugged in by the caller)
start and collect its work. Units flow step to step as soon as they are valid; there is no
barrier between steps.

Stopping: Ctrl+C / SIGTERM / a queued ``pause`` set a flag; the flag cancels the expression
budget of the unit being computed (it stays pending; those computed before it are recorded),
the loop returns in-flight units to pending and marks the run ``paused``. A second Ctrl+C exits
at once; the ledger is still consistent (every change is a transaction) and the next start
resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from octopipe.core.config import Pipeline
from octopipe.core.config_models import ExpressionStep
from octopipe.core.states import CommandEvent, RunEvent, RunStatus, UnitStepState
from octopipe.core.steps import CompiledPipeline, CompiledStep
from octopipe.engine import commands
from octopipe.engine.cost_budget import CostBudget
from octopipe.engine.exports import export_run, exports_current
from octopipe.engine.fingerprint import open_snapshot
from octopipe.engine.local_chunks import LOCAL_CHUNK, local_chains, run_local_chunk
from octopipe.engine.paths import RunPaths
from octopipe.engine.postprocess import NO_SCRIPTS, PostReport, ScriptPermission, run_post
from octopipe.engine.prices import price_record, session_prices
from octopipe.engine.progress import (
    PROGRESS_EVERY_S,
    ProgressSnapshot,
    ProgressTracker,
    snapshot_steps,
)
from octopipe.engine.runlog import RunLog
from octopipe.engine.starting import clear_starting, queued_for_me
from octopipe.errors import (
    EXIT_INTERRUPTED,
    OctopipeError,
    RunLocked,
    StoreError,
    UsageError,
)
from octopipe.store import RunnerIdentity, RunStore, open_run_store
from octopipe.store.lock import RunLock

"""A chunk of a local step computes for about this long at most before it is recorded, so
the runner applies commands and notices signals between slices."""
IDLE_SLEEP_S = 0.2


class LLMExecutor(Protocol):
    """Runs the LLM steps of a run (realtime or batch). The runner calls it every pass."""

    budget: CostBudget
    """The run's money (``engine.cost_budget``): one object shared by every executor of the
    run, so the cost cap holds for the run in both modes."""

    async def pump(self) -> bool:
        """Start and collect work; True when something happened."""

    def busy(self) -> bool:
        """True while requests or batches are outstanding."""

    async def stop(self) -> None:
        """Stop starting work; return in-flight realtime units to the ledger as pending."""

    def batch_summary(self) -> dict[str, int]:
        """Batches not yet collected, counted by state (empty when there are none)."""


ExecutorFactory = Callable[["RunContext"], LLMExecutor]


@dataclass
class RunContext:
    """What an executor needs: the run's files, ledger, compiled steps and log."""

    paths: RunPaths
    ledger: RunStore
    compiled: CompiledPipeline
    log: RunLog
    stop_requested: Callable[[], bool]
    request_stop: Callable[..., None]
    """``request_stop(reason, exit_code=None)``: pause the run; ``exit_code`` is the code
    ``octopipe run`` ends with (``EXIT_PROVIDER`` for a provider that refuses or is down)."""
    stop_urgent: Callable[[], bool] = lambda: False
    """True once the user asked to stop (Ctrl+C, ``pause``): in-flight calls get a short
    grace instead of their full timeout."""


@dataclass
class RunOutcome:
    status: RunStatus
    reason: str | None = None
    counts: dict[int, dict[UnitStepState, int]] = field(default_factory=dict)
    exit_code: int = 0
    post: PostReport | None = None  # what post-processing did, when it ran


class Runner:
    def __init__(
        self,
        paths: RunPaths,
        *,
        echo: TextIO | None = None,
        executor: ExecutorFactory | None = None,
        export: bool = True,
        progress: Callable[[ProgressSnapshot], None] | None = None,
        accept_snapshot: bool = False,
        post: ScriptPermission | None = NO_SCRIPTS,
    ) -> None:
        self.paths = paths
        self.post = post  # None: no post-processing (tests); else which folder scripts may run
        self._pipeline: Pipeline | None = None
        self.accept_snapshot = accept_snapshot  # take an edited config/ knowingly
        self.echo = echo
        self.executor_factory = executor
        self.export = export
        self.progress = progress
        self._tracker = ProgressTracker()
        self._last_progress = 0.0
        self._every = PROGRESS_EVERY_S
        self._stop_reason: str | None = None
        self._stop_code: int | None = None
        self._kill = False
        self._interrupts = 0
        self._urgent = False
        self._max_iterations: dict[str, int] = {}

    # --- entry point --------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        lock = RunLock(self.paths.root)
        if not lock.try_acquire():
            raise RunLocked(
                f"run {self.paths.name!r} is already being driven by another "
                "process; use `octopipe watch` to follow it"
            )
        # Handlers go in before the event loop starts, so a signal during start-up pauses the
        # run too (asyncio.run then leaves SIGINT to us).
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            ledger = open_run_store(self.paths.ledger)
            log = RunLog(self.paths.log, self.echo)
            try:
                return asyncio.run(self._drive(ledger, log))
            finally:
                log.close()
                ledger.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            lock.release()

    def request_stop(
        self, reason: str, kill: bool = False, *, exit_code: int | None = None, urgent: bool = False
    ) -> None:
        if self._stop_reason is None:
            self._stop_reason, self._stop_code = reason, exit_code
        self._kill = self._kill or kill
        self._urgent = self._urgent or urgent

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            raise KeyboardInterrupt  # second Ctrl+C: leave now; the ledger stays consistent
        self.request_stop(f"interrupted ({signal.Signals(signum).name})", urgent=True)

    # --- the loop -----------------------------------------------------------------------------

    async def _drive(self, ledger: RunStore, log: RunLog) -> RunOutcome:
        info = ledger.run_info()
        if info.status is RunStatus.KILLED:
            raise UsageError(f"run {info.name!r} was killed; it cannot be resumed")
        # The snapshot must be the one the ledger was made from (fingerprint and steps).
        pipeline = open_snapshot(ledger, self.paths, accept=self.accept_snapshot)
        self._pipeline = pipeline
        compiled = CompiledPipeline(pipeline)
        if info.status in (RunStatus.COMPLETE, RunStatus.FAILED) and not _has_work(ledger.counts()):
            if self.export and not exports_current(ledger, self.paths):
                # killed mid-export, or the results changed since (revalidate, repair ...)
                written = export_run(ledger, self.paths)
                log.write("EXPORT", ", ".join(p.name for p in written))
            post = self._post_process(ledger, log, only_stale=True)
            return RunOutcome(info.status, info.status_reason, ledger.counts(), post=post)
        # The executor (provider clients, API keys) is built before the run is marked running:
        # a missing key leaves the run as it was, not "running" with no runner.
        context = RunContext(
            self.paths,
            ledger,
            compiled,
            log,
            lambda: bool(self._stop_reason),
            self.request_stop,
            lambda: self._urgent,
        )
        executor = self.executor_factory(context) if self.executor_factory else None
        if executor is not None and any(cstep.is_llm for cstep in compiled.steps):
            # which price source and version price this session's calls (``info``, ``status``);
            # a pipeline of local steps makes no call and skips loading the price database
            ledger.update_run(options=session_prices(info.options, price_record(pipeline)))
        _reject_stale_stops(ledger, self.paths.root)
        clear_starting(self.paths.root)
        # One writer: whatever is in flight now was claimed by a runner that has died.
        released = ledger.release_in_flight()
        ledger.register_runner(RunnerIdentity.here())
        event = (
            RunEvent.REOPEN
            if info.status in (RunStatus.COMPLETE, RunStatus.FAILED)
            else RunEvent.START
        )
        ledger.set_run_status(event)
        log.write(
            "START",
            f"run {info.name} ({pipeline.name}), {len(compiled)} steps"
            + (f"; {released} in-flight units returned to pending" if released else ""),
        )
        try:
            await self._loop(ledger, log, compiled, executor)
            return await self._finish(ledger, log, executor)
        except Exception as exc:
            await self._die(ledger, log, executor, exc)
            raise

    async def _loop(
        self,
        ledger: RunStore,
        log: RunLog,
        compiled: CompiledPipeline,
        executor: LLMExecutor | None,
    ) -> None:
        chains = local_chains(compiled)
        while not self._stop_reason:
            await _yield_to_waiting_writer(ledger)
            self._apply_commands(ledger, log)
            self._report_progress(ledger, executor)
            progressed = False
            for index, cstep in enumerate(compiled.steps):
                if not cstep.is_llm and not self._stop_reason:
                    chunk = run_local_chunk(
                        ledger,
                        index,
                        cstep,
                        LOCAL_CHUNK,
                        then=chains[index],
                        stop_requested=self._stopping,
                    )
                    progressed |= chunk.done > 0
                    for hit_index, hits in sorted(chunk.hits.items()):
                        self._note_max_iterations(log, compiled.steps[hit_index], hits)
                    await _yield_to_waiting_writer(ledger)
                    await asyncio.sleep(0)
            if executor is not None:
                progressed |= await executor.pump()
            if progressed:
                continue
            if executor is not None and executor.busy():
                await asyncio.sleep(IDLE_SLEEP_S)
                continue
            counts = ledger.counts()
            if not _has_work(counts):
                return
            waiting = _llm_steps_waiting(counts, compiled)
            if waiting and executor is None:
                self.request_stop(
                    f"step {waiting!r} needs an LLM provider; resume with "
                    "`octopipe run RUN --realtime` or `--batch`"
                )
                return
            await asyncio.sleep(IDLE_SLEEP_S)

    async def _finish(
        self, ledger: RunStore, log: RunLog, executor: LLMExecutor | None
    ) -> RunOutcome:
        if executor is not None:
            await executor.stop()
        self._report_progress(ledger, executor, force=True)
        if self._stop_reason:
            ledger.release_in_flight()
            event = RunEvent.KILL if self._kill else RunEvent.PAUSE
            status = ledger.set_run_status(event, self._stop_reason)
            log.write("KILLED" if self._kill else "PAUSED", self._stop_reason)
            code = EXIT_INTERRUPTED if self._interrupts else (self._stop_code or 0)
            return RunOutcome(status, self._stop_reason, ledger.counts(), code)
        # Export first, then say complete: a crash in between leaves a running run that the
        # next start finishes, never a "complete" run without its outputs.
        if self.export:
            written = export_run(ledger, self.paths)
            log.write("EXPORT", ", ".join(str(p.name) for p in written))
        status = ledger.set_run_status(RunEvent.FINISH)
        counts = ledger.counts()
        log.write("COMPLETE", _summary(ledger, counts))
        # Complete first: post-processing reports its failures but never unmakes the run.
        post = self._post_process(ledger, log, only_stale=False)
        code = EXIT_INTERRUPTED if self._interrupts else 0
        return RunOutcome(status, None, counts, code, post=post)

    def _post_process(
        self, ledger: RunStore, log: RunLog, *, only_stale: bool
    ) -> PostReport | None:
        """Run-scope steps and ``post_process`` (``engine/postprocess.py``); a problem that
        stops it is logged (the run stays complete; ``octopipe post`` runs it again)."""
        if self.post is None or not self.export or self._pipeline is None:
            return None
        try:
            return run_post(
                ledger,
                self.paths,
                self._pipeline,
                log,
                allow=self.post,
                only_stale=only_stale,
                cancelled=self._stopping,
            )
        except OctopipeError as exc:
            log.write("POST", f"post-processing stopped: {exc.message}")
            return None

    async def _die(
        self, ledger: RunStore, log: RunLog, executor: LLMExecutor | None, exc: Exception
    ) -> None:
        """The runner stops on an error it cannot handle: leave the reason in ``run.log``,
        the event log and the run's status (``paused`` when the ledger refused a write, so
        freeing space and resuming is the way on; ``failed`` otherwise), each step on its own
        so a full disk loses as little as possible. The caller re-raises ``exc``."""
        detail = exc.message if isinstance(exc, OctopipeError) else f"{type(exc).__name__}: {exc}"
        reason = f"stopped by an error: {detail}"
        self.request_stop(reason, urgent=True)
        with contextlib.suppress(Exception):
            log.write("ERROR", reason)
        if executor is not None:
            with contextlib.suppress(Exception):
                await executor.stop()
        with contextlib.suppress(Exception):
            ledger.log_event("error", "ERROR", reason, {"type": type(exc).__name__})
        with contextlib.suppress(Exception):
            ledger.release_in_flight()
        with contextlib.suppress(Exception):
            if ledger.run_info().status is RunStatus.RUNNING:
                event = RunEvent.PAUSE if isinstance(exc, StoreError) else RunEvent.FAIL
                ledger.set_run_status(event, reason)
                log.write("PAUSED" if event is RunEvent.PAUSE else "FAILED", reason)

    def _stopping(self) -> bool:
        return self._stop_reason is not None

    def _note_max_iterations(self, log: RunLog, cstep: CompiledStep, hits: int) -> None:
        """One line per chunk of a step (never one per unit): units that reached
        ``max_iterations`` went on with ``_metadata.timeout`` set, or failed when the step
        says ``fail_on_max_iterations``."""
        step = cstep.step
        assert isinstance(step, ExpressionStep)
        self._max_iterations[cstep.name] = self._max_iterations.get(cstep.name, 0) + hits
        outcome = "failed" if step.fail_on_max_iterations else "went on"
        log.write(
            "MAX_ITERATIONS",
            f"step {cstep.name}: {hits} unit(s) reached max_iterations ({step.max_iterations}) "
            f"and {outcome}; {self._max_iterations[cstep.name]} in this session",
        )

    def _report_progress(
        self, ledger: RunStore, executor: LLMExecutor | None, force: bool = False
    ) -> None:
        now = time.monotonic()
        if self.progress is None or (not force and now - self._last_progress < self._every):
            return
        self._last_progress = now
        counts = ledger.counts()
        # counts() grows with the run (0.3 s at 1M units): keep it under a tenth of the time.
        self._every = max(PROGRESS_EVERY_S, 10 * (time.monotonic() - now))
        steps = snapshot_steps([(s.name, s.scope) for s in ledger.steps], counts)
        spent = executor.budget.spent if executor is not None else None
        batches = executor.batch_summary() if executor is not None else None
        unknown = executor.budget.unpriced_calls if executor is not None else 0
        self.progress(self._tracker.update(steps, spent, batches, unknown))

    def _apply_commands(self, ledger: RunStore, log: RunLog) -> None:
        for row in ledger.pending_commands():
            outcome = commands.apply_queued(ledger, row)
            ledger.mark_command(row.id, outcome.event, outcome.message)
            log.write("COMMAND", f"{row.kind}: {outcome.message}")
            if outcome.stop is not None:
                kill = isinstance(row.command, commands.Kill)
                self.request_stop(outcome.stop, kill=kill, urgent=True)


async def _yield_to_waiting_writer(ledger: RunStore, limit_s: float = 2.0) -> None:
    """Leave the store alone while another process waits to queue a command (at most
    ``limit_s``): back-to-back local chunks would otherwise keep it busy."""
    waited = 0.0
    while waited < limit_s and ledger.writer_waiting():
        await asyncio.sleep(0.01)
        waited += 0.01


def _reject_stale_stops(ledger: RunStore, run_dir: Path) -> None:
    """A pause or kill still queued when a runner starts was meant for one that has exited,
    unless it was queued while this runner was starting (``engine.starting``): that one is
    kept, and applied on the first pass."""
    for row in ledger.pending_commands():
        if isinstance(row.command, commands.STOPPING) and not queued_for_me(run_dir, row.ts):
            ledger.mark_command(
                row.id, CommandEvent.REJECT, "queued for a runner that had already exited"
            )


def _has_work(counts: dict[int, dict[UnitStepState, int]]) -> bool:
    live = (UnitStepState.PENDING, UnitStepState.IN_FLIGHT)
    return any(by_state.get(s, 0) for by_state in counts.values() for s in live)


def _llm_steps_waiting(
    counts: dict[int, dict[UnitStepState, int]], compiled: CompiledPipeline
) -> str | None:
    for index, cstep in enumerate(compiled.steps):
        if cstep.is_llm and counts.get(index, {}).get(UnitStepState.PENDING, 0):
            return cstep.name
    return None


def _summary(ledger: RunStore, counts: dict[int, dict[UnitStepState, int]]) -> str:
    parts = []
    for index, step in enumerate(ledger.steps):
        by_state = counts.get(index, {})
        valid = by_state.get(UnitStepState.VALID, 0)
        failed = by_state.get(UnitStepState.EXHAUSTED, 0) + by_state.get(UnitStepState.FAILED, 0)
        parts.append(f"{step.name}: {valid} valid, {failed} failed")
    return "; ".join(parts)
