"""Collecting a batch reads its units' input records only where checking needs them: a rule
that names an input field, or a failed answer whose prompt is kept. A step whose checks read
only the answer's own fields records a whole slice of valid answers without reading one."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.states import RunStatus, UnitStepState
from octopipe.emulator import EmulatorConfig, EmulatorRequest
from octopipe.errors import CorruptValue
from octopipe.store import open_run_store
from octopipe.store.lifecycle import UnitLifecycle
from support.batch import drive_batch, fruit_answer, fruit_children, fruit_pipeline
from support.realtime import check_ledger, ledger_rows, make_run

PICK, DESCRIBE = 0, 2


class WrongOnce:
    """Answers wrongly the first time it is asked: ``pick`` for units whose number is a
    multiple of 4 (no ``fruits``: the schema fails), ``describe`` for the fruits of units whose
    number is a multiple of 3 (another fruit: the rule fails)."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: EmulatorRequest) -> Any:
        with self.lock:
            self.seen[request.prompt] += 1
            first = self.seen[request.prompt] == 1
        answer = fruit_answer(request)
        pick = re.search(r"fruits for (\d+)\.", request.prompt)
        fruit = re.search(r"<fruit(\d+)x", request.prompt)
        if first and pick and int(pick.group(1)) % 4 == 0:
            return {"colour": "red"}
        if first and fruit and int(fruit.group(1)) % 3 == 0:
            return {"description": "about a pear"}
        return answer


@pytest.fixture
def input_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """How many units' input records the ledger read apart, per step."""
    reads: Counter[int] = Counter()
    original = UnitLifecycle.inputs_of

    def counted(self: UnitLifecycle, step_idx: int, uids: Sequence[int]) -> Any:
        found = original(self, step_idx, uids)
        reads[step_idx] += len(found)
        return found

    monkeypatch.setattr(UnitLifecycle, "inputs_of", counted)
    return reads


def run_fruit(tmp_path: Path, answer: Any, units: int = 12) -> Any:
    paths = make_run(
        fruit_pipeline(tmp_path / "fruit", units, chunk=50), tmp_path / "runs", mode="batch"
    )
    result = drive_batch(paths, emulator_config=EmulatorConfig(answer_fn=answer))
    assert result.outcome.status is RunStatus.COMPLETE
    return paths


def test_valid_answers_to_a_step_whose_checks_read_only_the_answer_read_no_input(
    tmp_path: Path, input_reads: Counter[int]
) -> None:
    paths = run_fruit(tmp_path, fruit_answer)
    check = check_ledger(paths)
    assert check.counts[PICK][UnitStepState.VALID] == 12
    assert check.counts[DESCRIBE][UnitStepState.VALID] == fruit_children(12)
    assert input_reads[PICK] == 0  # pick: a schema, no rules
    # describe's rule compares the answer with the unit's ``fruit``: every input is read
    assert input_reads[DESCRIBE] == fruit_children(12)


def test_a_failed_answer_keeps_its_prompt_read_from_the_units_input(
    tmp_path: Path, input_reads: Counter[int]
) -> None:
    paths = run_fruit(tmp_path, WrongOnce())
    failed = ledger_rows(
        paths,
        "SELECT u.unit_id, a.step_idx, a.stage, a.request_blob IS NOT NULL FROM attempts a "
        "JOIN units u ON u.uid = a.uid WHERE a.outcome != 'valid' ORDER BY a.step_idx, u.uid",
    )
    picks = [(u, stage, kept) for u, step, stage, kept in failed if step == PICK]
    assert picks == [(f"n{n}", "schema", 1) for n in (0, 4, 8)]
    assert input_reads[PICK] > 0  # the first batch had failures: its slice was read
    described = [(stage, kept) for _, step, stage, kept in failed if step == DESCRIBE]
    assert described and set(described) == {("rules", 1)}
    check = check_ledger(paths)
    assert check.counts[DESCRIBE][UnitStepState.VALID] == fruit_children(12)


def test_the_kept_prompt_of_a_failed_answer_is_the_prompt_that_was_sent(tmp_path: Path) -> None:
    paths = run_fruit(tmp_path, WrongOnce())
    with open_run_store(paths.ledger, readonly=True) as ledger:
        attempts = ledger.attempts_for("n4", PICK)
    assert [a.outcome for a in attempts] == ["failed", "valid"]
    assert attempts[0].request == "Pick 2 fruits for 4."
    assert attempts[0].response is not None and "colour" in attempts[0].response


def test_a_damaged_input_record_stops_the_collection_instead_of_failing_the_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is read while the judge checks an answer (and the judge turns what it
    calls raising into a failed unit): the ledger's error pauses the run all the same, with
    nothing recorded at the step."""

    original, failed = UnitLifecycle.inputs_of, []

    def damaged(self: UnitLifecycle, step_idx: int, uids: Sequence[int]) -> Any:
        if not failed:  # once: a second read (for a failed answer's prompt) would succeed
            failed.append(step_idx)
            raise CorruptValue("run ledger x: the fields of unit 'n1' are corrupt")
        return original(self, step_idx, uids)

    monkeypatch.setattr(UnitLifecycle, "inputs_of", damaged)
    paths = make_run(
        fruit_pipeline(tmp_path / "fruit", 3, chunk=50), tmp_path / "runs", mode="batch"
    )
    result = drive_batch(paths, emulator_config=EmulatorConfig(answer_fn=fruit_answer))
    assert result.outcome.status is RunStatus.PAUSED
    assert "are corrupt" in (result.outcome.reason or "")
    assert ledger_rows(paths, "SELECT COUNT(*) FROM attempts WHERE step_idx = 2") == [(0,)]
    in_flight = result.outcome.counts[DESCRIBE][UnitStepState.IN_FLIGHT]
    assert in_flight == fruit_children(3)  # still at the provider's answers, for a resume
