"""The emulator's fault matrix, through each vendor's real SDK (and an OpenAI-compatible server).

Every test runs examples/random_walk (6 units, one LLM step ``report``) against the emulator
on 127.0.0.1 with one kind of fault and ends with ``check_ledger``: verify clean, every unit
valid or exhausted exactly once at every step, attempts recorded once, cost = sum of attempts.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from octopipe.core.states import UnitStepState
from octopipe.emulator import EmulatorConfig, EmulatorRequest
from octopipe.engine.pacing import HEADROOM
from octopipe.store.ledger import Ledger
from support.realtime import (
    LANES,
    Lane,
    check_ledger,
    ledger_rows,
    make_lane,
    make_run,
    set_keys,
    step_states,
    trace_lines,
    walk_answer,
)

UNITS = 6
REPORT = 1  # step index of the LLM step


@pytest.fixture(params=LANES)
def lane(request: pytest.FixtureRequest, tmp_path: Path) -> Lane:
    return make_lane(request.param, tmp_path)


def _run(lane: Lane, tmp: Path, name: str = "r1"):
    return make_run(lane.pipeline, tmp / "runs", name, repeat=UNITS)


def _ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _report_valid(paths) -> int:
    return list(step_states(paths, "report").values()).count(UnitStepState.VALID)


def test_429_with_retry_after_backs_off_and_recovers(lane: Lane, tmp_path: Path) -> None:
    paths = _run(lane, tmp_path)
    config = EmulatorConfig(answer_fn=walk_answer, fault_schedule=("429", "429"), retry_after_s=0.5)
    drive = lane.drive(paths, config, rpm=3000)

    assert drive.outcome.status.value == "complete"
    check_ledger(paths)
    assert _report_valid(paths) == UNITS
    stats = drive.stats
    assert stats["status_429"] == 2 and stats["faults"] == {"429": 2}
    assert stats["responses"]["200"] == UNITS
    pacer = drive.executor.targets[0].pacer
    assert pacer.rate_limited == 2
    assert pacer.requests is not None
    assert pacer.requests.rate < pacer.requests.limit_per_s * HEADROOM  # cut, still recovering
    # Retry-After was honoured by the whole pacer, not only by the refused call: no request
    # went out between a 429 and the end of its Retry-After (0.5 s; Anthropic rounds to 1 s).
    calls = trace_lines(paths)
    refusals = [_ts(c["ts"]) for c in calls if c["status"] == 429]
    starts = [_ts(c["ts"]) - c["latency_ms"] / 1000 for c in calls]
    assert len(refusals) == 2
    for refused in refusals:
        inside = [s for s in starts if refused + 0.05 < s < refused + 0.45]
        assert not inside, (refused, starts)


@pytest.mark.parametrize("faults", [("500", "503", "529")], ids=["5xx"])
def test_server_errors_are_retried_within_the_call(
    lane: Lane, tmp_path: Path, faults: tuple[str, ...]
) -> None:
    paths = _run(lane, tmp_path)
    drive = lane.drive(paths, EmulatorConfig(answer_fn=walk_answer, fault_schedule=faults))

    assert drive.outcome.status.value == "complete"
    check_ledger(paths)
    assert _report_valid(paths) == UNITS
    assert drive.stats["responses"] == {"200": UNITS, "500": 1, "503": 1, "529": 1}
    # in-call retries: one attempt row per unit, all valid
    rows = ledger_rows(paths, "SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome")
    assert rows == [("valid", UNITS)]
    traced = sorted(c["status"] for c in trace_lines(paths) if c["status"] != 200)
    assert traced == [500, 503, 529]


def test_a_hung_request_times_out_and_the_unit_is_retried(tmp_path: Path, lane: Lane) -> None:
    """A request that hangs ends at its timeout; the unit is sent again without being
    charged an attempt (a first transient failure is never the unit's fault for sure), and
    the timeout is in the trace and in run.log."""

    def edit(config: dict) -> None:
        set_keys(config, "api.request_timeout_seconds", 1)
        set_keys(config, "api.retry.max_attempts", 1)  # no in-call retry: the unit's verdict

    hung = make_lane(lane.name, tmp_path / "hung", edit)
    paths = _run(hung, tmp_path)
    drive = hung.drive(paths, EmulatorConfig(answer_fn=walk_answer, fault_schedule=("hang",)))

    assert drive.outcome.status.value == "complete"
    assert drive.seconds < 15
    check_ledger(paths)
    assert _report_valid(paths) == UNITS
    assert ledger_rows(
        paths, "SELECT outcome, attempt_no, COUNT(*) FROM attempts GROUP BY 1, 2"
    ) == [("valid", 1, UNITS)]
    timed_out = [c["unit"] for c in trace_lines(paths) if c["status"] != 200]
    assert len(timed_out) == 1
    log = paths.log.read_text()
    assert f"unit {timed_out[0]}: not charged (0/3 attempts used); sent again later" in log
    assert "no answer within 1 s" in log


def test_malformed_answers_are_retried_and_kept(lane: Lane, tmp_path: Path) -> None:
    paths = _run(lane, tmp_path)
    config = EmulatorConfig(answer_fn=walk_answer, fault_schedule=("malformed", "malformed"))
    drive = lane.drive(paths, config)

    assert drive.outcome.status.value == "complete"
    check_ledger(paths)
    assert _report_valid(paths) == UNITS
    assert drive.stats["responses"] == {"200": UNITS + 2}
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        failed = [
            a
            for unit_id in step_states(paths, "report")
            for a in ledger.attempts_for(unit_id, REPORT)
            if a.outcome == "failed"
        ]
    finally:
        ledger.close()
    assert len(failed) == 2
    for attempt in failed:
        assert attempt.stage in ("parse", "schema")
        assert attempt.response  # the broken text is kept for revalidation
        assert attempt.request  # and the prompt that produced it
        assert attempt.attempt_no == 1


def test_repairable_json_is_repaired_without_a_retry(lane: Lane, tmp_path: Path) -> None:
    """A fenced answer with a trailing comma is repaired, not retried."""

    def sloppy(request: EmulatorRequest) -> str:
        answer = walk_answer(request)
        assert isinstance(answer, dict)
        body = ", ".join(f'"{k}": {v!r}'.replace("'", '"') for k, v in answer.items())
        return "Here it is:\n```json\n{" + body + ",}\n```"

    paths = _run(lane, tmp_path)
    drive = lane.drive(paths, EmulatorConfig(answer_fn=sloppy))

    assert drive.outcome.status.value == "complete"
    check_ledger(paths)
    assert _report_valid(paths) == UNITS
    assert ledger_rows(paths, "SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome") == [
        ("valid", UNITS)
    ]


def test_a_bad_request_fails_only_that_unit(lane: Lane, tmp_path: Path) -> None:
    paths = _run(lane, tmp_path)
    drive = lane.drive(paths, EmulatorConfig(answer_fn=walk_answer, fault_schedule=("400",)))

    assert drive.outcome.status.value == "complete"
    check_ledger(paths)
    states = step_states(paths, "report")
    refused = [c["unit"] for c in trace_lines(paths) if c["status"] == 400]
    assert len(refused) == 1
    assert states.pop(refused[0]) is UnitStepState.EXHAUSTED
    assert set(states.values()) == {UnitStepState.VALID}
    rows = ledger_rows(
        paths,
        "SELECT a.stage, a.outcome, s.last_stage FROM attempts a JOIN units u ON u.uid = a.uid "
        "JOIN unit_steps s ON s.uid = a.uid AND s.step_idx = a.step_idx WHERE u.unit_id = ?",
        refused[0],
    )
    assert rows == [("provider", "error", "provider")]  # one attempt: a 400 is not retried


def test_auth_error_pauses_the_run_and_resume_completes(lane: Lane, tmp_path: Path) -> None:
    paths = _run(lane, tmp_path)
    wrong_key = EmulatorConfig(answer_fn=walk_answer, api_key="the-key-the-server-wants")
    drive = lane.drive(paths, wrong_key)

    assert drive.outcome.status.value == "paused"
    reason = drive.outcome.reason or ""
    assert "401" in reason or "API key" in reason, reason
    check_ledger(paths, finished=False)
    info = Ledger.open(paths.ledger, readonly=True)
    try:
        assert info.run_info().status.value == "paused"
        assert info.run_info().status_reason == reason
        counts = info.counts()[REPORT]
    finally:
        info.close()
    assert counts[UnitStepState.PENDING] == UNITS  # no unit charged for the provider's refusal
    assert ledger_rows(paths, "SELECT COUNT(*) FROM attempts") == [(0,)]
    assert "[PAUSE]" in paths.log.read_text()

    resumed = lane.drive(paths, EmulatorConfig(answer_fn=walk_answer))
    assert resumed.outcome.status.value == "complete"
    check_ledger(paths)
    assert _report_valid(paths) == UNITS
