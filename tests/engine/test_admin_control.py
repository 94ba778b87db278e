"""engine.control.change_run without a live runner: retry, repair, rename, pause, kill."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from octopipe.core.states import RunEvent, RunStatus, UnitStepState
from octopipe.engine.commands import Kill, Pause, Rename, Repair, Retry, SwitchMode, UpdateSettings
from octopipe.engine.control import (
    change_run,
    change_run_detailed,
)
from octopipe.engine.queries import run_details
from octopipe.engine.runner import Runner
from octopipe.errors import CommandError, UsageError
from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock
from support.admin import delete_rows, expression_pipeline, make_run

FAILING = "10 // ((n + 1) % 3)"  # fails for every item whose n % 3 == 2


@pytest.fixture
def failed_run(tmp_path: Path):
    pipeline = expression_pipeline(tmp_path / "pipe", n_items=9, repeat=2, inverse=FAILING)
    return make_run(pipeline, tmp_path / "runs", "fails")


def _states(paths, step: int) -> dict[str, UnitStepState]:
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        out = {}
        for unit_id in _unit_ids(ledger):
            states = ledger.unit_states(unit_id)
            if step in states:
                out[unit_id] = states[step]
        return out
    finally:
        ledger.close()


def _unit_ids(ledger: Ledger) -> list[str]:
    return [unit_id for unit_id, _ in ledger.iter_valid(0)]


def test_retry_requeues_only_failed_units_and_keeps_history(failed_run) -> None:
    before = _states(failed_run, 1)
    failed = sorted(u for u, s in before.items() if s is UnitStepState.EXHAUSTED)
    assert len(failed) == 6 and len(before) == 18  # items 2, 5, 8 (x2 repeats)

    message = change_run(failed_run, Retry(step_idx=1))
    assert message == "requeued 6 failed unit(s)"
    after = _states(failed_run, 1)
    for unit_id, state in after.items():
        expected = UnitStepState.PENDING if unit_id in failed else before[unit_id]
        assert state is expected, unit_id
    assert _states(failed_run, 0) == {u: UnitStepState.VALID for u in before}

    Runner(failed_run, export=False).run()  # deterministic failure: they fail again
    ledger = Ledger.open(failed_run.ledger, readonly=True)
    try:
        attempts = ledger.attempts_for(failed[0], 1)
        assert [a.attempt_no for a in attempts] == [1, 2]
        assert all(a.stage == "expression" for a in attempts)
        assert ledger.attempts_for(sorted(set(before) - set(failed))[0], 1) == []
    finally:
        ledger.close()
    assert "[COMMAND] retry: requeued 6 failed unit(s)" in failed_run.log.read_text()


def test_retry_filters_by_unit_and_stage(failed_run) -> None:
    failed = sorted(u for u, s in _states(failed_run, 1).items() if s is UnitStepState.EXHAUSTED)
    assert change_run(failed_run, Retry(stage="rules")) == "requeued 0 failed unit(s)"
    assert change_run(failed_run, Retry(unit_ids=tuple(failed[:2]))) == (
        "requeued 2 failed unit(s)"
    )
    states = _states(failed_run, 1)
    assert [states[u] for u in failed[:3]] == [
        UnitStepState.PENDING,
        UnitStepState.PENDING,
        UnitStepState.EXHAUSTED,
    ]
    with pytest.raises(UsageError, match="no unit"):
        change_run(failed_run, Retry(unit_ids=("nope",)))
    with pytest.raises(UsageError, match="no step"):
        change_run(failed_run, Retry(step_idx=7))
    with pytest.raises(UsageError, match="unknown stage"):
        change_run(failed_run, Retry(stage="vibes"))
    with pytest.raises(CommandError, match="command 'retry': step_idx must be a step index"):
        change_run(failed_run, Retry(step_idx="1"))  # type: ignore[arg-type]


def test_repair_requeues_missing_units(failed_run) -> None:
    deleted = delete_rows(failed_run, 1, 5)
    ledger = Ledger.open(failed_run.ledger, readonly=True)
    try:
        assert sorted(ledger.verify().steps[1].missing) == deleted
    finally:
        ledger.close()
    assert change_run(failed_run, Repair()) == "requeued 5 missing unit(s)"
    ledger = Ledger.open(failed_run.ledger, readonly=True)
    try:
        assert ledger.verify().ok
    finally:
        ledger.close()


def test_rename_pause_kill_without_runner(failed_run) -> None:
    outcome = change_run_detailed(failed_run, Rename("  Nice name "))
    assert outcome.applied and not outcome.queued
    ledger = Ledger.open(failed_run.ledger, readonly=True)
    try:
        assert ledger.run_info().display_name == "Nice name"
    finally:
        ledger.close()
    with pytest.raises(UsageError, match="display name"):
        change_run(failed_run, Rename("  "))

    # a complete run: nothing to pause, and it cannot be killed
    assert "nothing to pause" in change_run(failed_run, Pause())
    with pytest.raises(UsageError, match="cannot be killed"):
        change_run(failed_run, Kill())


def test_pause_detached_run_and_kill(tmp_path: Path) -> None:
    pipeline = expression_pipeline(tmp_path / "pipe", n_items=3)
    paths = make_run(pipeline, tmp_path / "runs", "det", drive=False)
    ledger = Ledger.open(paths.ledger)
    ledger.set_run_status(RunEvent.START)  # a runner that died: stored "running", no lock
    ledger.claim_pending(0, 2)
    ledger.close()
    assert run_details(paths).status.status == "detached"

    message = change_run(paths, Pause())
    assert "status set from running to paused" in message
    assert "2 in-flight unit(s) returned to pending" in message
    assert "already paused" in change_run(paths, Pause())
    assert "to killed" in change_run(paths, Kill())
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        assert ledger.run_info().status is RunStatus.KILLED
    finally:
        ledger.close()
    assert "[COMMAND] kill:" in paths.log.read_text()


def test_change_is_queued_when_the_lock_is_held(failed_run) -> None:
    """A lock held by someone else means a live runner: the command is queued, not applied."""
    holder = RunLock(failed_run.root)
    assert holder.try_acquire()
    try:
        outcome = change_run_detailed(failed_run, Rename("x"), wait_s=0.2)
    finally:
        holder.release()
    assert outcome.queued and not outcome.applied
    assert "queued" in outcome.message
    ledger = Ledger.open(failed_run.ledger, readonly=True)
    try:
        pending = ledger.pending_commands()
        assert [(c.kind, c.command) for c in pending] == [("rename", Rename("x"))]
        assert ledger.run_info().display_name == "fails"
    finally:
        ledger.close()


def test_run_details(failed_run) -> None:
    details = run_details(failed_run)
    label = details.funnel[1]
    assert (label.input, label.valid, label.failed) == (18, 12, 6)
    assert label.failed_by_stage == {"expression": 6}
    assert details.options["mode"] == "batch"
    assert details.events and len(details.events) <= 10
    data = details.to_dict()
    assert data["funnel"][1]["yield"] == round(12 / 18, 4)
    assert data["live"] is False and data["runner_pid"] is None


def test_a_command_left_by_an_exiting_runner_is_applied_here(failed_run) -> None:
    """The runner exits before its next pass: the queued command is applied under the lock
    by the process that queued it, and marked, so it cannot surprise a later start."""
    holder = RunLock(failed_run.root)
    assert holder.try_acquire()
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    try:
        outcome = change_run_detailed(failed_run, Retry(step_idx=1), wait_s=5)
    finally:
        timer.join()
        holder.release()
    assert outcome.applied and not outcome.queued and outcome.command_id is not None
    assert outcome.message == "requeued 6 failed unit(s)"
    ledger = Ledger.open(failed_run.ledger, readonly=True)
    try:
        assert ledger.pending_commands() == []
    finally:
        ledger.close()


def test_a_killed_run_is_not_retried(failed_run) -> None:
    ledger = Ledger.open(failed_run.ledger)
    ledger.set_run_status(RunEvent.REOPEN)
    ledger.set_run_status(RunEvent.KILL, "test")
    ledger.close()
    for command in (Retry(), Repair()):
        with pytest.raises(UsageError, match="killed"):
            change_run(failed_run, command)


def test_a_mode_switch_and_settings_are_commands_too(failed_run) -> None:
    assert change_run(failed_run, SwitchMode("realtime")) == "batch -> realtime"
    assert change_run(failed_run, SwitchMode("realtime")) == "mode stays realtime"
    message = change_run(failed_run, UpdateSettings("openai", "gpt-x", {"max_cost_usd": 3.0}))
    assert message == "max_cost_usd=3.0, model=gpt-x, provider=openai"
    ledger = Ledger.open(failed_run.ledger, readonly=True)
    try:
        info = ledger.run_info()
        events = [(e.tag, e.message) for e in ledger.events()][-2:]
    finally:
        ledger.close()
    assert (info.mode, info.provider, info.model) == ("realtime", "openai", "gpt-x")
    assert info.options["max_cost_usd"] == 3.0
    assert events == [
        ("MODE", "mode batch -> realtime"),
        ("SETTINGS", "model=gpt-x, provider=openai"),
    ]
    assert "[COMMAND] switch_mode: batch -> realtime" in failed_run.log.read_text()


def test_settings_wait_for_a_live_runner_to_be_paused(failed_run) -> None:
    holder = RunLock(failed_run.root)
    assert holder.try_acquire()
    try:
        for command in (SwitchMode("realtime"), UpdateSettings(model="m")):
            with pytest.raises(UsageError, match="`octopipe pause fails` first"):
                change_run(failed_run, command, wait_s=0.2)
    finally:
        holder.release()
    ledger = Ledger.open(failed_run.ledger, readonly=True)
    try:
        assert ledger.pending_commands() == []  # nothing was queued
        assert ledger.run_info().mode == "batch"
    finally:
        ledger.close()


def test_a_runner_rejects_a_queued_settings_change(failed_run) -> None:
    change_run(failed_run, Retry(step_idx=1))  # work for the runner to do
    ledger = Ledger.open(failed_run.ledger)
    try:
        ledger.enqueue_command(SwitchMode("realtime"))
        ledger.enqueue_command(Rename("renamed by the runner"))
    finally:
        ledger.close()
    Runner(failed_run, export=False).run()
    log = failed_run.log.read_text()
    assert "[COMMAND] switch_mode: switch_mode is applied only while no runner is live" in log
    assert "[COMMAND] rename: renamed to 'renamed by the runner'" in log
    ledger = Ledger.open(failed_run.ledger, readonly=True)
    try:
        assert ledger.run_info().mode == "batch"
    finally:
        ledger.close()
