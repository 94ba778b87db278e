"""Changing a run that a live runner (a real second process) is driving: the command is queued
in the ledger, the runner applies it, ``pause`` stops it; ``logs -f`` follows it to the end.

A runner busy with local steps computes them without holding SQLite's write lock (it claims
and records each slice in one short transaction) and leaves the ledger to a CLI that signals,
through ``store.intent.writer_intent`` (taken by ``enqueue_command``), that it waits to queue a command. The ``real`` case
runs ``octopipe run`` as it is; the ``yielding`` case adds an extra wait before each pass, so
the CLI side is tested with a runner that yields more than it must, too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from octopipe.store.lock import is_held
from support.admin import make_run, slow_pipeline
from support.cli import invoke as octopipe

MAIN = "from octopipe.cli import main; main()"
YIELDING_MAIN = """
import time
from octopipe.engine import runner
from octopipe.store.intent import writer_waiting

apply = runner.Runner._apply_commands

def patched(self, ledger, log):
    waited = 0.0
    while writer_waiting(self.paths.root) and waited < 2.0:
        time.sleep(0.01)
        waited += 0.01
    return apply(self, ledger, log)

runner.Runner._apply_commands = patched
from octopipe.cli import main
main()
"""


def _spawn(*args: object, code: str = MAIN) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "runner_code",
    [
        pytest.param(MAIN, id="real"),
        pytest.param(YIELDING_MAIN, id="yielding"),
    ],
)
def test_pause_a_live_runner(tmp_path: Path, runner_code: str) -> None:
    runs_dir = tmp_path / "runs"
    # 10,000 units of a 2,000-iteration loop: ~0.6 s per 1,000-unit pass, ~6 s in all
    pipeline = slow_pipeline(tmp_path / "p", n_items=20, repeat=500, loops=2000)
    paths = make_run(pipeline, runs_dir, "slow", drive=False)
    runner = _spawn("run", "slow", "--runs-dir", runs_dir, "-q", "--yes", code=runner_code)
    follower = None
    try:
        _wait_for(lambda: is_held(paths.root), 30, "the runner to take the lock")
        follower = _spawn("logs", "slow", "--runs-dir", runs_dir, "-f", "-n", "5")

        code, out, err = octopipe("rename", "slow", "Live one", "--runs-dir", runs_dir)
        assert code == 0 and "applied by the live runner: renamed to 'Live one'" in out, err

        started = time.monotonic()
        code, out, err = octopipe("pause", "slow", "--runs-dir", runs_dir, "--json")
        assert code == 0, err
        result = json.loads(out)
        assert result["queued"] and result["applied"], result
        assert "the runner has stopped" in result["message"]
        runner.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert not is_held(paths.root)

        _, out, _ = octopipe("status", "slow", "--runs-dir", runs_dir, "--json")
        view = json.loads(out)
        assert view["status"] == "paused" and view["reason"] == "paused by request"
        assert view["display_name"] == "Live one"
        assert 0 < view["steps"][0]["valid"] < 10_000  # stopped part-way, resumable
        assert view["steps"][0]["in_flight"] == 0

        follower_out, _ = follower.communicate(timeout=10)
        assert follower.returncode == 0
        assert "[COMMAND] pause: pausing" in follower_out
        assert "[PAUSED] paused by request" in follower_out
    finally:
        for proc in (runner, follower):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
