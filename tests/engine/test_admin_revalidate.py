"""engine.revalidate: stored raw answers checked again, no API call, nothing dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from octopipe.core.states import UnitStepState
from octopipe.engine.revalidate import revalidate_run
from octopipe.engine.runner import Runner
from octopipe.errors import RunLocked, UsageError
from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock
from support.admin import fail_llm_units, llm_pipeline, make_run, set_minimum

LOW = '{"score": 3, "note": "meh"}'
GARBAGE = "Sorry, I cannot rate that."
ANSWERS = {
    "item000": LOW,  # fails the rule score >= 5
    "item001": GARBAGE,  # cannot be parsed at all
    "item002": None,  # a provider failure: no raw response
    # item003 stays pending
}
JUDGE = 1


@pytest.fixture
def judged(tmp_path: Path):
    pipeline = llm_pipeline(tmp_path / "pipe", n_items=4, minimum=5)
    paths = make_run(pipeline, tmp_path / "runs", "judged")  # pauses at judge
    fail_llm_units(paths, "judge", ANSWERS)
    return pipeline, paths


def _failures(paths) -> dict[str, tuple[UnitStepState, str | None, str | None]]:
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        return {r.unit_id: (r.state, r.stage, r.raw_response) for r in ledger.iter_failures(JUDGE)}
    finally:
        ledger.close()


def test_snapshot_config_changes_nothing_but_counts(judged) -> None:
    _, paths = judged
    before = _failures(paths)
    report = revalidate_run(paths)
    assert report.config == str(paths.config_dir)
    assert (report.passed, report.still_failing, report.unparseable, report.skipped) == (
        0,
        1,
        1,
        1,
    )
    after = _failures(paths)
    assert set(after) == set(before) == {"item000", "item001", "item002"}
    assert after["item000"] == (UnitStepState.EXHAUSTED, "rules", LOW)
    assert after["item001"] == (UnitStepState.EXHAUSTED, "parse", GARBAGE)
    assert after["item002"] == before["item002"]
    assert "[REVALIDATE] 0 passed, 1 still failing" in paths.log.read_text()


def test_relaxed_source_rule_makes_the_answer_valid(judged) -> None:
    pipeline, paths = judged
    set_minimum(pipeline, 5, 2)
    report = revalidate_run(paths, step="judge", use_source=True, source=pipeline)
    assert report.config == str(pipeline.resolve())
    assert (report.passed, report.still_failing, report.unparseable, report.skipped) == (
        1,
        0,
        1,
        1,
    )
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        assert ledger.unit_states("item000") == {
            0: UnitStepState.VALID,
            1: UnitStepState.VALID,
            2: UnitStepState.PENDING,
        }
        valid = dict(ledger.iter_valid(JUDGE))
        assert valid["item000"]["score"] == 3 and valid["item000"]["note"] == "meh"
        # the unparseable answer stays a failure, its record and raw text intact
        failures = {r.unit_id: r for r in ledger.iter_failures(JUDGE)}
        assert failures["item001"].raw_response == GARBAGE
        assert failures["item001"].stage == "parse"
        assert failures["item001"].input["target"] == 2
        history = ledger.attempts_for("item001", JUDGE)
        assert [(a.attempt_no, a.response) for a in history] == [(1, GARBAGE)]
        assert len(ledger.attempts_for("item000", JUDGE)) == 1  # history untouched
    finally:
        ledger.close()

    # resuming carries the revalidated unit on through the next step
    Runner(paths, export=False).run()
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        after = dict(ledger.iter_valid(2))
        assert after["item000"]["doubled"] == 6
    finally:
        ledger.close()


def test_source_config_must_be_known_and_run_must_not_be_live(judged) -> None:
    pipeline, paths = judged
    moved = pipeline.with_name(pipeline.name + "_moved")
    pipeline.rename(moved)  # the run recorded its source folder; it is gone now
    with pytest.raises(UsageError) as info:
        revalidate_run(paths, use_source=True)
    assert "--use-source-config PATH" in str(info.value) or "does not exist" in str(info.value)
    moved.rename(pipeline)
    with pytest.raises(UsageError, match="does not exist"):
        revalidate_run(paths, source=pipeline / "nope")
    with pytest.raises(UsageError, match="not an LLM step"):
        revalidate_run(paths, step="prep")
    with pytest.raises(UsageError, match="no step"):
        revalidate_run(paths, step="nope")
    holder = RunLock(paths.root)
    assert holder.try_acquire()
    try:
        with pytest.raises(RunLocked, match="pause it first"):
            revalidate_run(paths)
    finally:
        holder.release()
    assert _failures(paths)["item000"][1] == "rules"
