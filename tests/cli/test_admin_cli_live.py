"""Changing a run that a live runner (a real second process) is driving: the command is queued
in the ledger, the runner applies it, ``pause`` stops it; ``logs -f`` follows it to the end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from admin_builders import make_run, slow_pipeline  # noqa: E402
from test_admin_cli import octopipe  # noqa: E402

from octopipe.store.lock import is_held  # noqa: E402

MAIN = "from octopipe.cli import main; main()"


def _spawn(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", MAIN, *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_pause_a_live_runner(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    # 20,000 units of a 2,000-iteration loop: ~0.5 s per 1,000-unit pass, ~10 s in all
    pipeline = slow_pipeline(tmp_path / "p", n_items=20, repeat=1000, loops=2000)
    paths = make_run(pipeline, runs_dir, "slow", drive=False)
    runner = _spawn("run", "slow", "--runs-dir", runs_dir, "-q", "--yes")
    follower = None
    try:
        _wait_for(lambda: is_held(paths.root), 30, "the runner to take the lock")
        follower = _spawn("logs", "slow", "--runs-dir", runs_dir, "-f", "-n", "5")

        code, out, _ = octopipe("rename", "slow", "Live one", "--runs-dir", runs_dir)
        assert code == 0 and "applied by the live runner: renamed to 'Live one'" in out, out

        started = time.monotonic()
        code, out, err = octopipe("pause", "slow", "--runs-dir", runs_dir, "--json")
        assert out, err
        result = json.loads(out)
        assert code == 0 and result["queued"] and result["applied"], result
        runner.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert not is_held(paths.root)

        _, out, _ = octopipe("status", "slow", "--runs-dir", runs_dir, "--json")
        view = json.loads(out)
        assert view["status"] == "paused" and view["reason"] == "paused by request"
        assert view["display_name"] == "Live one"
        assert 0 < view["steps"][0]["valid"] < 20_000  # stopped part-way, resumable
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
