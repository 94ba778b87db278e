"""Nothing lost when a realtime call or its recording goes wrong in an unexpected way.

A server answering 200 without the part its API promises (a choice without ``message``), an
adapter raising something it should not, a ledger that refuses a write (disk full): every
finished call is recorded, or the run stops with the error recorded (``run.log``, the event
log, the run's status). No exception escapes into an asyncio done-callback, no unit stays in
flight, no paid call's usage is dropped silently. Over real loopback HTTP through the real SDK.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.states import UnitStepState
from octopipe.emulator import EmulatorConfig
from octopipe.engine import runner as runner_module
from octopipe.engine.realtime import RealtimeOptions
from octopipe.errors import StoreError
from octopipe.providers import openai_adapter
from octopipe.store import lifecycle
from octopipe.store.ledger import Ledger
from support.realtime import (
    LANES,
    Lane,
    check_ledger,
    copy_example,
    drive,
    fast_retries,
    ledger_rows,
    make_lane,
    make_run,
    step_states,
    walk_answer,
)

UNITS = 6
REPORT = 1

pytestmark = pytest.mark.timeout(60)  # the bug this guards against leaves the run idling


def _run(lane: Lane, tmp: Path, name: str = "r1"):
    return make_run(lane.pipeline, tmp / "runs", name, repeat=UNITS)


def _events(paths) -> list[tuple[str, str, str]]:
    return ledger_rows(paths, "SELECT level, tag, message FROM events ORDER BY id")


@pytest.mark.parametrize("lane_name", LANES)
def test_an_answer_without_its_message_is_a_parse_failure_that_keeps_body_and_cost(
    lane_name: str, tmp_path: Path
) -> None:
    lane = make_lane(lane_name, tmp_path)
    paths = _run(lane, tmp_path)
    drive = lane.drive(paths, EmulatorConfig(answer_fn=walk_answer, fault_schedule=("shapeless",)))

    assert drive.outcome.status.value == "complete"
    check_ledger(paths)  # nothing in flight, cost = sum of the attempts
    assert set(step_states(paths, "report").values()) == {UnitStepState.VALID}
    rows = ledger_rows(
        paths,
        "SELECT a.uid, a.attempt_no, a.stage, a.errors_json, a.input_tokens, a.output_tokens "
        "FROM attempts a WHERE a.outcome != 'valid'",
    )
    assert len(rows) == 1, rows
    uid, attempt_no, stage, errors_json, tokens_in, tokens_out = rows[0]
    assert (attempt_no, stage) == (1, "parse")
    assert "malformed answer" in errors_json or lane_name == "gemini", errors_json
    assert tokens_in > 0 and tokens_out > 0  # the billed usage reached the ledger
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        unit_id = next(
            u for u, s in step_states(paths, "report").items() if ledger.uid_of(u) == uid
        )
        attempts = ledger.attempts_for(unit_id, REPORT)
    finally:
        ledger.close()
    assert [a.outcome for a in attempts] == ["failed", "valid"]
    if lane_name in ("openai", "openai-compatible"):
        body = json.loads(attempts[0].response or "")
        assert "message" not in body["choices"][0]  # the raw body is kept, as received
        assert body["usage"]["completion_tokens"] == tokens_out
    if lane_name != "openai-compatible":  # a priced model: the failed answer was paid for
        cost = ledger_rows(
            paths, "SELECT cost_usd FROM attempts WHERE uid = ? AND attempt_no = 1", uid
        )
        assert cost[0][0] > 0


def test_an_adapter_that_raises_something_else_fails_the_unit_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lane = make_lane("openai", tmp_path)
    paths = _run(lane, tmp_path)
    real = openai_adapter.OpenAIProvider.complete
    calls = {"n": 0}

    async def broken_once(self: Any, request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("an adapter bug")
        return await real(self, request)

    monkeypatch.setattr(openai_adapter.OpenAIProvider, "complete", broken_once)
    drive = lane.drive(paths, EmulatorConfig(answer_fn=walk_answer))

    assert drive.outcome.status.value == "complete"
    check_ledger(paths)
    assert set(step_states(paths, "report").values()) == {UnitStepState.VALID}
    failed = ledger_rows(
        paths, "SELECT stage, outcome, errors_json FROM attempts WHERE outcome != 'valid'"
    )
    assert len(failed) == 1
    stage, outcome, errors_json = failed[0]
    assert (stage, outcome) == ("provider", "error")
    assert "adapter error KeyError" in errors_json
    assert "adapter error KeyError: 'an adapter bug'" in paths.log.read_text()


def _walk_run(tmp_path: Path, name: str = "r1"):
    pipeline = copy_example("random_walk", tmp_path / "src", fast_retries)
    return make_run(pipeline, tmp_path / "runs", name, repeat=UNITS)


def _fake() -> RealtimeOptions:
    return RealtimeOptions(provider="fake", model="gpt-4o-mini")


def _full_disk_after(monkeypatch: pytest.MonkeyPatch, ok_writes: int, failures: int | None):
    """Attempt inserts of the LLM step fail with SQLite's disk-full error after ``ok_writes``
    successful ones, ``failures`` times (``None``: for ever)."""
    real = lifecycle.insert_attempts
    seen = {"writes": 0, "failed": 0}

    def insert(db: Any, where: str, step_idx: int, *args: Any, **kwargs: Any) -> Any:
        if step_idx != REPORT:
            return real(db, where, step_idx, *args, **kwargs)
        seen["writes"] += 1
        if seen["writes"] > ok_writes and (failures is None or seen["failed"] < failures):
            seen["failed"] += 1
            raise sqlite3.OperationalError("database or disk is full")
        return real(db, where, step_idx, *args, **kwargs)

    monkeypatch.setattr(lifecycle, "insert_attempts", insert)
    return seen


def test_a_ledger_that_refuses_writes_for_a_moment_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _walk_run(tmp_path)
    seen = _full_disk_after(monkeypatch, ok_writes=0, failures=2)
    config = EmulatorConfig(answer_fn=walk_answer, latency_ms=20)
    done = drive(paths, _fake(), config)

    assert seen["failed"] == 2
    assert done.outcome.status.value == "complete"
    check = check_ledger(paths)
    assert set(step_states(paths, "report").values()) == {UnitStepState.VALID}
    assert check.attempts == UNITS  # every paid answer recorded once, none sent twice
    assert done.stats["responses"] == {"200": UNITS}
    log = paths.log.read_text()
    assert "cannot record" in log and "(try 1/3): " in log and "database or disk is full" in log


def test_a_full_disk_stops_the_run_with_the_reason_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _walk_run(tmp_path)
    _full_disk_after(monkeypatch, ok_writes=0, failures=None)
    with pytest.raises(StoreError) as raised:
        drive(paths, _fake(), EmulatorConfig(answer_fn=walk_answer))

    message = raised.value.message
    assert "could not be recorded in the ledger" in message
    assert "database or disk is full" in message
    assert "of usage not counted" in message
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        info = ledger.run_info()
        counts = ledger.counts()[REPORT]
    finally:
        ledger.close()
    assert info.status.value == "paused"  # never left "running" (shown detached) silently
    assert info.status_reason == f"stopped by an error: {message}"
    assert counts.get(UnitStepState.IN_FLIGHT, 0) == 0
    assert counts[UnitStepState.PENDING] == UNITS
    log = paths.log.read_text()
    assert f"[ERROR] stopped by an error: {message}" in log
    assert f"[PAUSED] stopped by an error: {message}" in log
    assert ("error", "ERROR", f"stopped by an error: {message}") in _events(paths)

    monkeypatch.undo()  # space freed: the run resumes and completes
    resumed = drive(paths, _fake(), EmulatorConfig(answer_fn=walk_answer))
    assert resumed.outcome.status.value == "complete"
    check_ledger(paths)
    assert set(step_states(paths, "report").values()) == {UnitStepState.VALID}


def test_a_runner_that_dies_on_an_unexpected_error_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _walk_run(tmp_path)

    def explode(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("a bug in a local step")

    monkeypatch.setattr(runner_module, "run_local_chunk", explode)
    with pytest.raises(RuntimeError, match="a bug in a local step"):
        drive(paths, _fake(), EmulatorConfig(answer_fn=walk_answer))

    reason = "stopped by an error: RuntimeError: a bug in a local step"
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        info = ledger.run_info()
    finally:
        ledger.close()
    assert (info.status.value, info.status_reason) == ("failed", reason)
    assert f"[FAILED] {reason}" in paths.log.read_text()
    assert ("error", "ERROR", reason) in _events(paths)

    monkeypatch.undo()
    resumed = drive(paths, _fake(), EmulatorConfig(answer_fn=walk_answer))
    assert resumed.outcome.status.value == "complete"
    check_ledger(paths)
