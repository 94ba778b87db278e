"""A change sent while a `run --detach` runner is starting (before it holds the lock) is
queued for it, and the runner applies it on its first pass instead of rejecting it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from octopipe.core.commands import Pause
from octopipe.engine.control import change_run_detailed
from octopipe.engine.runner import Runner
from octopipe.engine.starting import (
    clear_starting,
    mark_starting,
    queued_for_me,
    started_at,
    starting_pid,
)
from octopipe.store.ledger import Ledger
from support.admin import expression_pipeline, make_run


def _info(paths):
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        return ledger.run_info(), ledger.pending_commands()
    finally:
        ledger.close()


def test_pause_before_the_runner_is_live_is_applied_when_it_starts(tmp_path) -> None:
    pipeline = expression_pipeline(tmp_path / "p", n_items=5)
    paths = make_run(pipeline, tmp_path / "runs", "fresh", drive=False)
    mark_starting(paths.root, os.getpid(), started_at())  # this process plays the runner
    outcome = change_run_detailed(paths, Pause(), wait_s=0.2)
    assert outcome.queued and not outcome.applied
    assert "pause is queued" in outcome.message
    info, pending = _info(paths)
    assert info.status.value == "pending"
    assert [row.kind for row in pending] == ["pause"]
    Runner(paths, export=False).run()
    info, pending = _info(paths)
    assert info.status.value == "paused" and pending == []
    assert not (paths.root / "runner.starting").exists()


def test_without_a_starting_runner_a_pending_run_has_nothing_to_pause(tmp_path) -> None:
    pipeline = expression_pipeline(tmp_path / "p", n_items=3)
    paths = make_run(pipeline, tmp_path / "runs", "idle", drive=False)
    outcome = change_run_detailed(paths, Pause(), wait_s=0.2)
    assert outcome.applied and "nothing to pause" in outcome.message
    assert _info(paths)[1] == []


def test_a_stop_queued_before_the_runner_started_is_still_rejected(tmp_path) -> None:
    pipeline = expression_pipeline(tmp_path / "p", n_items=3)
    paths = make_run(pipeline, tmp_path / "runs", "stale", drive=False)
    ledger = Ledger.open(paths.ledger)
    try:
        ledger.enqueue_command(Pause())
    finally:
        ledger.close()
    time.sleep(0.01)
    mark_starting(paths.root, os.getpid(), started_at())
    Runner(paths, export=False).run()
    info, pending = _info(paths)
    assert info.status.value == "complete" and pending == []


def test_starting_pid_ignores_dead_torn_and_missing_markers(tmp_path) -> None:
    assert starting_pid(tmp_path) is None
    (tmp_path / "runner.starting").write_text("{not json")
    assert starting_pid(tmp_path) is None
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    mark_starting(tmp_path, int(child.stdout), started_at())
    assert starting_pid(tmp_path) is None  # that process has exited
    since = started_at()
    mark_starting(tmp_path, os.getpid(), since)
    assert starting_pid(tmp_path) == os.getpid()
    assert queued_for_me(tmp_path, since) and not queued_for_me(tmp_path, "2000-01-01T00:00:00Z")
    clear_starting(tmp_path)
    assert starting_pid(tmp_path) is None
