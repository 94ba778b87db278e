"""Local steps under a live runner: a unit past its expression budget fails alone; Ctrl+C,
SIGTERM and ``pause`` stop a runner within 2 s even while each unit computes for a long time;
commands never fail because a chunk is computing; hitting ``max_iterations`` is recorded on the
unit, counted in ``status`` and logged once per chunk."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from octopipe.core.states import RunStatus, UnitStepState
from octopipe.engine.runner import Runner
from octopipe.store.ledger import Ledger
from support.crash import octopipe, spawn, status_json, stored_status, verify_report, wait_for
from support.runner import make_run, write_pipeline

pytestmark = pytest.mark.timeout(180)

ITEMS = "items:\n" + "".join(f"  - {{name: u{i}, n: {i}}}\n" for i in range(12))
PAUSE_WITHIN_S = 2.0

# Every unit spins for a few tenths of a second of CPU (within its 2 s budget): one chunk of 40
# units takes several seconds, so a stop that waits for the chunk to end is late.
SLOW_STEPS = (
    "    - name: spin\n"
    "      scope: expression\n"
    "      init: {i: 0, acc: 0}\n"
    "      expressions:\n"
    "        i: 'i + 1'\n"
    "        acc: 'acc + len([k for k in range(2000)])'\n"
    "      loop_until: 'i >= 3000'\n"
    "      max_iterations: 100000\n"
)


def done_units(run_dir: Path) -> int:
    with Ledger.open(run_dir / "ledger.db", readonly=True) as ledger:
        return ledger.counts().get(0, {}).get(UnitStepState.VALID, 0)


SLOW_ITEMS = "items:\n" + "".join(f"  - {{name: u{i}, n: {i}}}\n" for i in range(40))


def slow_run(tmp_path: Path) -> tuple[Path, Path]:
    pipeline = write_pipeline(tmp_path / "p", SLOW_STEPS, SLOW_ITEMS)
    runs = tmp_path / "runs"
    make_run(pipeline, runs, "slow")
    return runs, runs / "slow"


def test_a_unit_past_its_budget_fails_alone_with_stage_expression(tmp_path: Path) -> None:
    steps = (
        "    - name: calc\n"
        "      scope: expression\n"
        "      expressions:\n"
        "        total: 'sum(range(10**12)) if n == 4 else n'\n"
        "        text: \"'x' * (n * 10**9) if n == 7 else 'ok'\"\n"
    )
    paths = make_run(write_pipeline(tmp_path / "p", steps, ITEMS), tmp_path / "runs")
    started = time.monotonic()
    assert Runner(paths, export=False).run().status is RunStatus.COMPLETE
    assert time.monotonic() - started < 30
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        counts = ledger.counts()[0]
        failures = {f.unit_id: f for f in ledger.iter_failures(0)}
    assert counts[UnitStepState.VALID] == 10 and counts[UnitStepState.EXHAUSTED] == 2
    assert sorted(failures) == ["u4", "u7"]
    assert failures["u4"].stage == failures["u7"].stage == "expression"
    first = failures["u4"].errors[0]
    assert first["variable"] == "total"
    assert first["expression"] == "sum(range(10**12)) if n == 4 else n"
    assert "range(1000000000000) would have more than 10,000,000 elements" in first["message"]
    assert failures["u7"].errors[0]["variable"] == "text"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_pauses_within_two_seconds_while_units_compute_slowly(
    tmp_path: Path, signum: signal.Signals
) -> None:
    runs, run_dir = slow_run(tmp_path)
    proc = spawn(["run", "slow", "--runs-dir", str(runs), "-q", "-y"], log=tmp_path / "run.out")
    try:
        assert wait_for(lambda: done_units(run_dir) > 0, 60, proc)
        time.sleep(0.3)  # mid-unit, inside a chunk
        sent = time.monotonic()
        os.kill(proc.pid, signum)
        assert wait_for(lambda: stored_status(run_dir) == "paused", PAUSE_WITHIN_S * 2, proc)
        assert proc.wait(timeout=PAUSE_WITHIN_S * 2) == 130
        assert time.monotonic() - sent < PAUSE_WITHIN_S, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    view = status_json("slow", runs)
    assert view["status"] == "paused" and signum.name in view["reason"]
    assert view["steps"][0]["in_flight"] == 0
    assert 0 < view["steps"][0]["pending"] < 40
    report = verify_report(run_dir)
    assert report["ok"], report


def test_commands_are_applied_while_a_chunk_computes(tmp_path: Path) -> None:
    runs, run_dir = slow_run(tmp_path)
    proc = spawn(["run", "slow", "--runs-dir", str(runs), "-q", "-y"], log=tmp_path / "run.out")
    try:
        assert wait_for(lambda: done_units(run_dir) > 0, 60, proc)
        renamed = octopipe("rename", "slow", "Busy one", "--runs-dir", str(runs), timeout=30)
        assert renamed.returncode == 0, renamed.stdout + renamed.stderr
        assert "applied by the live runner: renamed to 'Busy one'" in renamed.stdout
        started = time.monotonic()
        paused = octopipe("pause", "slow", "--runs-dir", str(runs), "--json", timeout=30)
        assert paused.returncode == 0, paused.stdout + paused.stderr
        result = json.loads(paused.stdout)
        assert result["queued"] and result["applied"], result
        assert "the runner has stopped" in result["message"]
        assert time.monotonic() - started < 5
        proc.wait(timeout=10)  # the runner has let go of the run
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "database is locked" not in (tmp_path / "run.out").read_text()
    view = status_json("slow", runs)
    assert view["status"] == "paused" and view["display_name"] == "Busy one"
    assert view["steps"][0]["valid"] < 40 and view["steps"][0]["in_flight"] == 0


def test_reaching_max_iterations_is_recorded_counted_and_logged_per_chunk(tmp_path: Path) -> None:
    steps = (
        "    - name: walk\n"
        "      scope: expression\n"
        "      init: {pos: 0}\n"
        "      expressions: {pos: 'pos + 1'}\n"
        "      loop_until: 'pos >= 10 + n * 0'\n"
        "      max_iterations: 8\n"
    )
    items = "items:\n" + "".join(f"  - {{name: u{i}, n: {i}}}\n" for i in range(5))
    pipeline = write_pipeline(tmp_path / "p", steps, items, "  repeat: 3\n")
    text = (pipeline / "config.yaml").read_text().replace("pos >= 10 + n * 0", "pos >= 10 - n")
    (pipeline / "config.yaml").write_text(text)  # u0 and u1 need more than 8 passes
    runs = tmp_path / "runs"
    paths = make_run(pipeline, runs, "walks")
    assert Runner(paths, export=False).run().status is RunStatus.COMPLETE

    with Ledger.open(paths.ledger, readonly=True) as ledger:
        outputs = dict(ledger.iter_valid(0))
    capped = {unit: out["_metadata"] for unit, out in outputs.items() if "_metadata" in out}
    assert sorted(capped) == sorted(f"u{i}__rep{r:04d}" for i in (0, 1) for r in range(3))
    assert set(map(json.dumps, capped.values())) == {
        json.dumps({"expression_step": "walk", "iterations": 8, "timeout": True})
    }
    assert outputs["u2__rep0000"]["pos"] == 8 and "_metadata" not in outputs["u2__rep0000"]

    view = status_json("walks", runs)
    assert view["steps"][0]["max_iterations"] == 6
    shown = octopipe("status", "walks", "--runs-dir", str(runs))
    assert "walk: 6 unit(s) reached max_iterations" in shown.stdout
    lines = [line for line in paths.log.read_text().splitlines() if "[MAX_ITERATIONS]" in line]
    assert len(lines) == 1, lines
    assert "step walk: 6 unit(s) reached max_iterations (8) and went on" in lines[0]
