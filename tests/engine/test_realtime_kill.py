"""kill -9 of a realtime runner at seeded instants, then resume: nothing lost, nothing twice.

The runner runs in a forked child (``support.realtime.child_main``) against the emulator with
40 ms (+ up to 20 ms) latency and 4 calls in flight, so a kill lands while calls are on the
wire, while answers are being recorded, or during start-up. After every kill the ledger must
verify clean (units in flight stay claimed until the next start releases them); after the
final resume every unit is valid exactly once, with exactly one attempt row whose usage is what
the emulator reported for that prompt, and the run's cost is the sum of those attempts.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import openai  # noqa: F401  (imported before forking: children start in milliseconds)
import pytest

from octopipe.core.config import load_pipeline
from octopipe.core.costs import cost_usd
from octopipe.core.registry import load_registry
from octopipe.core.steps import CompiledPipeline
from octopipe.emulator import EmulatorConfig, EmulatorRequest
from octopipe.emulator.answers import make_answer
from octopipe.engine.paths import RunPaths
from octopipe.engine.realtime import RealtimeOptions
from octopipe.store.ledger import Ledger
from support.realtime import (
    check_ledger,
    copy_example,
    drive,
    fast_retries,
    ledger_rows,
    make_run,
    realtime_attempts,
    start_child,
    walk_answer,
)

UNITS = 60
KILLS = 4
MODEL = load_registry().default_model("fake")  # the example's; `fake` speaks OpenAI's format


def _kill_once(paths: RunPaths, rng: random.Random, first: bool) -> dict[str, Any]:
    before = realtime_attempts(paths)
    child = start_child(paths.root, "openai", latency_ms=40.0, concurrency=4)
    if first:  # somewhere in start-up or the first calls
        time.sleep(rng.uniform(0.0, 0.3))
    else:  # after a few more answers were recorded, at a random point of the next ones
        target = before + rng.randint(3, 12)
        give_up = time.monotonic() + 30
        while realtime_attempts(paths) < target and child.is_alive():
            assert time.monotonic() < give_up, "the child made no progress"
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.06))
    alive = child.is_alive()
    if alive:
        os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    return {"killed": alive, "exitcode": child.exitcode, "attempts": realtime_attempts(paths)}


@pytest.mark.parametrize("seed", [11, 29])
def test_kill_9_during_realtime_calls_then_resume(seed: int, tmp_path: Path) -> None:
    pipeline = copy_example("random_walk", tmp_path, fast_retries)
    paths = make_run(pipeline, tmp_path / "runs", repeat=UNITS)
    rng = random.Random(seed)

    kills = []
    for round_ in range(KILLS):
        kills.append(_kill_once(paths, rng, first=round_ == 0))
        check_ledger(paths, finished=False, after_kill=True)
    assert sum(k["killed"] for k in kills) >= KILLS - 1, kills  # not all finished on their own
    assert all(k["exitcode"] in (-signal.SIGKILL, 0) for k in kills), kills

    resumed = drive(paths, RealtimeOptions(provider="fake"), EmulatorConfig(answer_fn=walk_answer))
    assert resumed.outcome.status.value == "complete", kills
    checked = check_ledger(paths)
    print(f"seed {seed}: kills {kills}")

    # every unit: exactly one attempt (the answers are right, so one is all it takes), valid,
    # with the usage the emulator reports for its prompt -- nothing recorded twice
    rows = ledger_rows(
        paths,
        "SELECT u.unit_id, a.attempt_no, a.outcome, a.input_tokens, a.output_tokens, a.cost_usd "
        "FROM attempts a JOIN units u ON u.uid = a.uid WHERE a.step_idx = 1",
    )
    assert len(rows) == UNITS and len({r[0] for r in rows}) == UNITS, kills
    assert {(r[1], r[2]) for r in rows} == {(1, "valid")}
    report = CompiledPipeline(load_pipeline(paths.config_dir)).steps[1]
    registry = load_registry()
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        walked = dict(ledger.iter_valid(0))
    finally:
        ledger.close()
    expected_total = 0.0
    for unit_id, _no, _outcome, tokens_in, tokens_out, cost in rows:
        request = EmulatorRequest(
            vendor="openai",
            endpoint="openai.chat",
            model=MODEL,
            prompt=report.render(unit_id, walked[unit_id]),
        )
        answer = make_answer(request, walk_answer)
        assert (tokens_in, tokens_out) == (answer.input_tokens, answer.output_tokens), unit_id
        assert cost == cost_usd(registry, "fake", MODEL, answer)
        expected_total += cost
    assert checked.cost_usd == pytest.approx(expected_total, rel=1e-12)
