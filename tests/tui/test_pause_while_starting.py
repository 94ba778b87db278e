"""A pause sent while the TUI is still starting a runner (the `run --detach` child has not
even written runner.starting) waits for the start, then is queued for that runner instead of
being answered "nothing to pause"."""

from __future__ import annotations

import os
import subprocess
import threading
import time

from octopipe.engine.starting import mark_starting, started_at
from octopipe.store.ledger import Ledger
from octopipe.tui.port import RunControl
from support.admin import expression_pipeline, make_run


def test_pause_during_resume_waits_for_the_start_and_is_queued(tmp_path) -> None:
    pipeline = expression_pipeline(tmp_path / "p", n_items=4)
    paths = make_run(pipeline, tmp_path / "runs", "fresh", drive=False)
    spawning = threading.Event()

    def slow_spawn(argv: list[str]) -> subprocess.CompletedProcess[str]:
        spawning.set()
        time.sleep(0.5)  # the CLI importing itself before it starts the runner
        mark_starting(paths.root, os.getpid(), started_at())  # this process is "the runner"
        return subprocess.CompletedProcess(argv, 0, "started", "")

    control = RunControl(tmp_path / "runs", spawn=slow_spawn, wait_s=0.2)
    resume = threading.Thread(target=control.resume, args=("fresh",))
    resume.start()
    assert spawning.wait(5)
    began = time.monotonic()
    result = control.pause("fresh")
    resume.join()
    assert time.monotonic() - began >= 0.3  # it waited for the runner to be started
    assert "pause is queued" in result.message
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        assert ledger.run_info().status.value == "pending"
        assert [row.kind for row in ledger.pending_commands()] == ["pause"]
    finally:
        ledger.close()


def test_pause_with_no_start_in_progress_does_not_wait(tmp_path) -> None:
    pipeline = expression_pipeline(tmp_path / "p", n_items=2)
    make_run(pipeline, tmp_path / "runs", "idle", drive=False)
    control = RunControl(tmp_path / "runs", wait_s=0.2)
    began = time.monotonic()
    result = control.pause("idle")
    assert time.monotonic() - began < 2
    assert "nothing to pause" in result.message
