"""Ctrl+C with realtime calls in flight: answers arriving within the short grace are recorded
(they were paid for), the rest are abandoned and their units go back to pending; either way
the run is paused within seconds, never after the request timeout."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from octopipe.core.states import UnitStepState
from octopipe.emulator import EmulatorConfig
from octopipe.errors import EXIT_INTERRUPTED
from support.realtime import (
    EmulatorThread,
    check_ledger,
    drive,
    ledger_rows,
    make_lane,
    make_run,
    step_states,
    walk_answer,
)

pytestmark = pytest.mark.timeout(90)
UNITS = 6
GRACE_S = 2.0  # engine.realtime.STOP_GRACE_S, as the user is told


def _interrupt_once_calls_arrive(emulator: EmulatorThread, sent: dict[str, float]) -> None:
    deadline = time.monotonic() + 60
    while emulator.stats()["requests_total"] < UNITS and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    sent["at"] = time.monotonic()
    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize(
    ("latency_ms", "recorded"),
    [(900, UNITS), (30_000, 0)],
    ids=["answers-within-the-grace", "answers-too-late"],
)
def test_ctrl_c_waits_a_short_grace_for_calls_in_flight(
    tmp_path: Path, latency_ms: int, recorded: int
) -> None:
    lane = make_lane("openai-compatible", tmp_path)
    paths = make_run(lane.pipeline, tmp_path / "runs", repeat=UNITS)
    config = EmulatorConfig(answer_fn=walk_answer, latency_ms=latency_ms, port=lane.port or 0)
    sent: dict[str, float] = {}
    with EmulatorThread(config) as emulator:
        watcher = threading.Thread(target=_interrupt_once_calls_arrive, args=(emulator, sent))
        watcher.start()
        try:
            done = drive(paths, lane.options(concurrency=UNITS), emulator=emulator)
        finally:
            watcher.join()
        stopped_after = time.monotonic() - sent["at"]

    assert done.outcome.status.value == "paused"
    assert done.outcome.reason == "interrupted (SIGINT)"
    assert done.outcome.exit_code == EXIT_INTERRUPTED
    assert stopped_after < GRACE_S + 2.0, stopped_after  # the request timeout is 120 s
    check_ledger(paths, finished=False)
    states = list(step_states(paths, "report").values())
    assert states.count(UnitStepState.VALID) == recorded
    assert states.count(UnitStepState.PENDING) == UNITS - recorded
    assert ledger_rows(paths, "SELECT COUNT(*) FROM attempts") == [(recorded,)]
    log = paths.log.read_text()
    assert f"[STOP] waiting up to 2 s for {UNITS} call(s) in flight" in log
    abandoned = f"[STOP] abandoned {UNITS} call(s) still in flight; their units are pending"
    assert (abandoned in log) is (recorded == 0)
