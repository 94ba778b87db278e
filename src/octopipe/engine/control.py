"""Changing a run from outside its runner, and the detailed view the admin commands show.

``change_run(paths, command)`` is the one way the CLI and the TUI change a run, ``command``
being one of ``engine.commands`` (``Pause``, ``Kill``, ``Retry``, ``Repair``, ``Rename``,
``SwitchMode``, ``UpdateSettings``):

* **No live runner** (the run lock is free): take the lock, open the ledger read-write, apply
  the change in this process (``engine.commands.apply``), refresh the exports a change of
  results made stale (``retry``, ``repair``), write a ``COMMAND`` line to ``run.log``,
  release the lock. ``repair`` here also returns in-flight units no open batch holds to
  pending: with no runner, nobody is working on them. ``pause`` and ``kill`` have no runner
  to stop, so they set the run's status directly when the state machine allows it
  (``running`` — a detached run — can be paused; ``pending``/``running``/``paused`` can be
  killed) and say so.
* **A live runner** holds the lock: ``SwitchMode`` and ``UpdateSettings`` are refused (pause
  the run first); the others are queued in the ledger (the one write allowed
  without the lock) and poll until the runner has taken it off the queue (it applies commands
  on every pass of its loop), or until ``wait_s`` passes, in which case the answer says the
  command is queued and will be applied. ``pause``/``kill`` then also wait, within the same
  budget, for the runner to let go of the lock. If the runner exits before taking the
  command, it is applied here under the lock instead (and marked in the queue), so a stale
  ``pause`` never waits for the next start. A runner that ``run --detach`` has started but
  that has not yet taken the lock (``engine.starting``) counts as live: the command is
  queued for it, and it applies it on its first pass. The store tells the runner meanwhile that a
  writer is waiting (``RunStore.writer_waiting``), so a runner busy with local steps leaves
  it free for a moment.

Arguments are checked against the run before anything is queued: a bad step index, stage or
unit id would otherwise reach the runner and fail there.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from octopipe.core.commands import Mode
from octopipe.core.states import (
    RUN_TRANSITIONS,
    CommandEvent,
    RunEvent,
    RunStatus,
)
from octopipe.engine import commands
from octopipe.engine.commands import (
    CHANGES_RESULTS,
    QUEUEABLE,
    Command,
    Kill,
    Pause,
    Rename,
    Repair,
    Retry,
    SwitchMode,
    UpdateSettings,
)
from octopipe.engine.exports import refresh_exports
from octopipe.engine.paths import RunPaths
from octopipe.engine.runlog import RunLog
from octopipe.engine.starting import starting_pid
from octopipe.errors import CannotWrite, StoreError, UsageError
from octopipe.store import RunReader, RunStore, open_run_store
from octopipe.store.lock import RunLock, is_held
from octopipe.store.records import STAGES

POLL_S = 0.05


@dataclass(frozen=True)
class ChangeOutcome:
    """What became of a change: applied here, applied by the live runner, or still queued."""

    kind: str
    message: str
    applied: bool  # the change has taken effect
    queued: bool  # it went through the live runner's queue
    command_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def change_run(paths: RunPaths, command: Command, *, wait_s: float = 5.0) -> str:
    """Apply ``command`` to the run (see the module notes); returns a one-line account of it.

    Raises ``UsageError`` when the change is refused (bad arguments for this run, a move the
    run's state machine does not allow, a settings change while a runner is live).
    """
    return change_run_detailed(paths, command, wait_s=wait_s).message


def change_run_detailed(paths: RunPaths, command: Command, *, wait_s: float = 5.0) -> ChangeOutcome:
    if isinstance(command, QUEUEABLE) and starting_pid(paths.root) is not None:
        # a runner started by `run --detach` has not taken the lock yet: it applies this
        return _queue_for_runner(paths, command, wait_s)
    lock = RunLock(paths.root)
    if lock.try_acquire():
        try:
            return _apply_locally(paths, command)
        finally:
            lock.release()
    if not isinstance(command, QUEUEABLE):
        raise UsageError(
            f"run {paths.name!r} is being driven by another process; "
            f"`octopipe pause {paths.name}` first, then change its settings"
        )
    return _queue_for_runner(paths, command, wait_s)


# --- without a runner ---------------------------------------------------------------------------


def _apply_locally(paths: RunPaths, command: Command) -> ChangeOutcome:
    ledger = open_run_store(paths.ledger)
    try:
        command = _checked(ledger, command)
        message = _apply_held(ledger, command, paths)
    finally:
        ledger.close()
    _log(paths, command.kind, message)
    return ChangeOutcome(command.kind, message, applied=True, queued=False)


def _apply_held(ledger: RunStore, command: Command, paths: RunPaths) -> str:
    """Apply a change in this process, which holds the run lock; ``UsageError`` if refused."""
    if isinstance(command, Pause | Kill):
        return _stop_without_runner(ledger, command)
    kind = command.kind
    outcome = commands.apply(ledger, command)
    if outcome.event is CommandEvent.REJECT:
        raise UsageError(outcome.message)
    message = outcome.message
    if isinstance(command, Repair):
        released = ledger.release_in_flight()  # no runner: nobody is working on them
        if released:
            message += f"; returned {released} stranded in-flight unit(s) to pending"
    if isinstance(command, CHANGES_RESULTS):
        try:
            refreshed = refresh_exports(ledger, paths)
        except CannotWrite as exc:  # the change is made and stays made; say so, then fail
            _log(paths, kind, message)
            raise CannotWrite(
                exc.path,
                f"{exc.reason} ({kind} was applied: {message}; the exports stay stale until "
                "`octopipe export` or the next `octopipe run` can write them)",
                "export",
            ) from None
        if refreshed:
            message += f"; refreshed {', '.join(f.path.name for f in refreshed)}"
        message += _refresh_post(ledger, paths)
    return message


def _refresh_post(ledger: RunStore, paths: RunPaths) -> str:
    """Built-in post-processing the change made stale, re-run (``engine/postprocess.py``)."""
    # Imported here: post-processing loads the pipeline's config (pydantic models), which the
    # read-only tools that import this module (verify, info ...) never need.
    from octopipe.engine.postprocess import refresh_after_change

    log = RunLog(paths.log)
    try:
        report = refresh_after_change(ledger, paths, log)
    finally:
        log.close()
    if report is None or not report.actions:
        return ""
    done = ", ".join(f"{a.action.name} {a.outcome}" for a in report.actions)
    return f"; post-processing re-run: {done}"


def _stop_without_runner(ledger: RunStore, command: Pause | Kill) -> str:
    pause = isinstance(command, Pause)
    status = ledger.run_info().status
    event = RunEvent.PAUSE if pause else RunEvent.KILL
    target = RunStatus.PAUSED if pause else RunStatus.KILLED
    if status is target:
        return f"no runner is driving the run; it is already {status.value}"
    if (status, event) not in RUN_TRANSITIONS:
        if pause:
            return f"no runner is driving the run and it is {status.value}: nothing to pause"
        raise UsageError(f"the run is {status.value}; a {status.value} run cannot be killed")
    given = command.reason if isinstance(command, Pause) else None
    reason = given or ("paused by request (no live runner)" if pause else "killed by request")
    with ledger.transaction():
        released = ledger.release_in_flight()
        ledger.set_run_status(event, reason)
    extra = f"; {released} in-flight unit(s) returned to pending" if released else ""
    return f"no runner is driving the run; status set from {status.value} to {target.value}{extra}"


def _log(paths: RunPaths, kind: str, message: str) -> None:
    log = RunLog(paths.log)
    try:
        log.write("COMMAND", f"{kind}: {message}")
    finally:
        log.close()


# --- through the live runner ------------------------------------------------------------------


def _queue_for_runner(paths: RunPaths, command: Command, wait_s: float) -> ChangeOutcome:
    log_offset = _size(paths.log)
    deadline = time.monotonic() + wait_s
    kind = command.kind
    ledger = open_run_store(paths.ledger)
    try:
        command = _checked(ledger, command)
        command_id = ledger.enqueue_command(command)
        while True:
            if all(c.id != command_id for c in ledger.pending_commands()):
                break  # the runner took it
            if not is_held(paths.root) and starting_pid(paths.root) is None:
                # The runner exited before its next pass: apply the command here instead.
                leftover = _apply_leftover(paths, ledger, command_id, command)
                if leftover is not None:
                    return leftover
            if time.monotonic() >= deadline:
                return ChangeOutcome(
                    kind,
                    f"a runner is driving the run; {kind} is queued (command {command_id}) "
                    "and will be applied on its next pass",
                    applied=False,
                    queued=True,
                    command_id=command_id,
                )
            time.sleep(POLL_S)
    finally:
        ledger.close()
    result = _runner_result(paths.log, log_offset, kind)
    settle = time.monotonic() + 1.0  # the runner logs the result just after marking it
    while result is None and time.monotonic() < settle:
        time.sleep(POLL_S)
        result = _runner_result(paths.log, log_offset, kind)
    result = result or "applied"
    if result.startswith("unknown command"):
        raise UsageError(f"the runner rejected {kind}: {result}")
    message = f"applied by the live runner: {result}"
    if isinstance(command, Pause | Kill):
        stopped = _wait_released(paths.root, deadline)
        message += "; the runner has stopped" if stopped else "; the runner is stopping"
    return ChangeOutcome(kind, message, applied=True, queued=True, command_id=command_id)


def _apply_leftover(
    paths: RunPaths, ledger: RunStore, command_id: int, command: Command
) -> ChangeOutcome | None:
    """Apply our queued command under the lock if no runner took it; ``None`` if a runner
    holds the lock again (it will apply the command) or has already taken it."""
    lock = RunLock(paths.root)
    if not lock.try_acquire():
        return None
    try:
        if all(c.id != command_id for c in ledger.pending_commands()):
            return None
        try:
            message = _apply_held(ledger, command, paths)
        except UsageError as exc:
            ledger.mark_command(command_id, CommandEvent.REJECT, exc.message)
            raise
        ledger.mark_command(command_id, CommandEvent.APPLY, message)
        _log(paths, command.kind, message)
    finally:
        lock.release()
    return ChangeOutcome(command.kind, message, applied=True, queued=False, command_id=command_id)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _runner_result(log: Path, offset: int, kind: str) -> str | None:
    """The runner logs ``[COMMAND] kind: result`` right after marking a command; the ledger
    has no reader for a command's result, so the log written since the command was queued
    is where the result is read from."""
    prefix = f"[COMMAND] {kind}: "
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        at = line.find(prefix)
        if at >= 0:
            return line[at + len(prefix) :]
    return None


def _wait_released(run_dir: Path, deadline: float) -> bool:
    while is_held(run_dir):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


# --- argument checks ----------------------------------------------------------------------------


def _checked(ledger: RunReader, command: Command) -> Command:
    """``command`` as it will be applied to this run (a display name trimmed), or
    ``UsageError`` saying why this run cannot take it."""
    if isinstance(command, Retry | Repair) and ledger.run_info().status is RunStatus.KILLED:
        raise UsageError(
            f"the run was killed; it cannot be resumed, so there is nothing to {command.kind}"
        )
    if isinstance(command, Retry):
        step = command.step_idx
        if step is not None and not 0 <= step < len(ledger.steps):
            raise UsageError(f"no step {step!r} in this run")
        stage = command.stage
        if stage is not None and stage not in STAGES:
            raise UsageError(f"unknown stage {stage!r}; one of: {', '.join(STAGES)}")
        if command.unit_ids is not None:
            unknown = [u for u in command.unit_ids if not _has_unit(ledger, u)]
            if unknown:
                raise UsageError(f"no unit(s) {', '.join(map(repr, unknown))} in this run")
    elif isinstance(command, Rename):
        name = command.display_name.strip()
        if not name or len(name) > 200 or any(ord(ch) < 32 for ch in name):
            raise UsageError("a display name must be 1 to 200 printable characters")
        return Rename(name)
    return command


def _has_unit(ledger: RunReader, unit_id: str) -> bool:
    try:
        ledger.uid_of(unit_id)
    except StoreError:  # no such unit
        return False
    return True


# --- the detailed view (``info``) -----------------------------------------------------------


def update_settings(
    paths: RunPaths,
    *,
    mode: str | None = None,
    options: dict[str, Any] | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> None:
    """Record, on a run with no live runner, that its LLM steps now go ``batch`` or
    ``realtime`` (``SwitchMode``: batches already submitted are collected either way), run
    options to keep for later resumes (``max_cost_usd``, ``base_url``) and/or the provider
    and model given on resume (``UpdateSettings``: shown by ``info`` and ``status``, used by
    later resumes), in one transaction. A live runner: pause it first."""
    lock = RunLock(paths.root)
    if not lock.try_acquire():
        raise UsageError(
            f"run {paths.name!r} is being driven by another process; "
            f"`octopipe pause {paths.name}` first, then change its settings"
        )
    try:
        switch = None if mode is None else SwitchMode(cast(Mode, mode))
        settings = UpdateSettings(provider, model, options or {})
        ledger = open_run_store(paths.ledger)
        try:
            old = ledger.run_info().mode
            with ledger.transaction():
                if switch is not None:
                    commands.apply(ledger, switch)
                updated = commands.apply(ledger, settings)
        finally:
            ledger.close()
        if mode is not None and mode != old:
            _log(paths, "mode", f"{old} -> {mode}")
        if settings.options or provider is not None or model is not None:
            _log(paths, "options", updated.message)
    finally:
        lock.release()
