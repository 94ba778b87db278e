"""The runner drives local steps through the ledger to a consistent end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runner_builders import make_run, write_pipeline

from conftest import EXAMPLES
from octopipe.core.states import RunStatus, UnitStepState
from octopipe.engine.queries import run_status
from octopipe.engine.runner import Runner
from octopipe.errors import RunLocked
from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock

ITEMS = "items:\n" + "".join(f"  - {{name: u{i}, n: {i}}}\n" for i in range(30))


def test_expression_pipeline_completes_and_exports(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path / "p",
        (
            "    - {name: double, scope: expression, expressions: {d: 'n * 2'}}\n"
            "    - {name: label, scope: expression, expressions: {tag: \"f'{name}:{d}'\"}}\n"
        ),
        ITEMS,
    )
    paths = make_run(pipeline, tmp_path / "runs")
    outcome = Runner(paths).run()
    assert outcome.status is RunStatus.COMPLETE
    lines = (paths.outputs / "label_validated.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["tag"] for r in records] == [f"u{i}:{2 * i}" for i in range(30)]
    assert (paths.outputs / "double_failures.jsonl").read_text() == ""


def test_unit_whose_value_cannot_be_stored_fails_alone(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path / "p",
        (
            "    - {name: calc, scope: expression, "
            "expressions: {x: \"float('nan') if n == 7 else n / 2\"}}\n"
        ),
        ITEMS,
    )
    paths = make_run(pipeline, tmp_path / "runs")
    assert Runner(paths).run().status is RunStatus.COMPLETE
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        counts = ledger.counts()[0]
        failures = list(ledger.iter_failures(0))
    assert counts[UnitStepState.VALID] == 29 and counts[UnitStepState.EXHAUSTED] == 1
    assert [f.unit_id for f in failures] == ["u7"]
    assert "JSON" in json.dumps(failures[0].errors)


def test_expression_error_is_a_failure_record_not_a_drop(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path / "p",
        ("    - {name: calc, scope: expression, expressions: {x: '10 // (n - 3)'}}\n"),
        ITEMS,
    )
    paths = make_run(pipeline, tmp_path / "runs")
    Runner(paths).run()
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        [failure] = list(ledger.iter_failures(0))
        assert ledger.verify().ok
    assert failure.unit_id == "u3" and failure.stage == "expression"
    assert "ZeroDivisionError" in json.dumps(failure.errors)


def test_fan_out_children_continue_and_verify_is_whole(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path / "p",
        (
            "    - {name: make, scope: expression, expressions: {parts: 'list(range(n % 4))'}}\n"
            "    - {name: split, scope: fan_out, field: parts, child_field: part}\n"
            "    - {name: square, scope: expression, expressions: {sq: 'part * part'}}\n"
        ),
        ITEMS,
    )
    paths = make_run(pipeline, tmp_path / "runs")
    assert Runner(paths).run().status is RunStatus.COMPLETE
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        assert ledger.verify().ok
        children = dict(ledger.iter_valid(2))
    expected = sum(i % 4 for i in range(30))
    assert len(children) == expected
    assert children["u5__fan000"]["part"] == 0 and children["u7__fan002"]["sq"] == 4


def test_llm_step_without_provider_pauses_with_reason(tmp_path: Path) -> None:
    paths = make_run(EXAMPLES / "card_game", tmp_path / "runs", max_units=6)
    outcome = Runner(paths).run()
    assert outcome.status is RunStatus.PAUSED
    assert "play" in (outcome.reason or "")
    view = run_status(paths)
    assert [(s.name, s.valid, s.pending) for s in view.steps[:2]] == [
        ("deal", 6, 0),
        ("play", 0, 6),
    ]


def test_second_runner_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path / "p", ("    - {name: calc, scope: expression, expressions: {x: 'n'}}\n"), ITEMS
    )
    paths = make_run(pipeline, tmp_path / "runs")
    with RunLock(paths.root), pytest.raises(RunLocked):
        Runner(paths).run()
    assert Runner(paths).run().status is RunStatus.COMPLETE


def test_running_a_complete_run_again_changes_nothing(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path / "p", ("    - {name: calc, scope: expression, expressions: {x: 'n'}}\n"), ITEMS
    )
    paths = make_run(pipeline, tmp_path / "runs")
    Runner(paths).run()
    before = (paths.outputs / "calc_validated.jsonl").read_bytes()
    assert Runner(paths).run().status is RunStatus.COMPLETE
    assert (paths.outputs / "calc_validated.jsonl").read_bytes() == before


def test_run_never_reads_the_source_folder_again(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path / "p",
        ("    - {name: calc, scope: expression, expressions: {x: 'n + 1'}}\n"),
        ITEMS,
    )
    paths = make_run(pipeline, tmp_path / "runs")
    (pipeline / "config.yaml").write_text("garbage: [")
    assert Runner(paths).run().status is RunStatus.COMPLETE
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        assert dict(ledger.iter_valid(0))["u4"]["x"] == 5


def test_executor_that_cannot_start_leaves_the_run_as_it_was(tmp_path: Path) -> None:
    """A missing API key (raised while building the executor) must not leave a run that says
    'running' with no runner behind it."""
    from octopipe.errors import MissingApiKey

    paths = make_run(EXAMPLES / "random_walk", tmp_path / "runs", max_units=3)

    def no_key(_ctx: object) -> None:
        raise MissingApiKey("no API key: set GEMINI_API_KEY", provider="gemini")

    with pytest.raises(MissingApiKey):
        Runner(paths, executor=no_key).run()  # type: ignore[arg-type]
    assert run_status(paths).status == "pending"


def test_the_runner_registers_itself_and_its_claims_carry_it(tmp_path: Path) -> None:
    import os
    import socket
    import sqlite3

    pipeline = write_pipeline(
        tmp_path / "p",
        "    - {name: double, scope: expression, expressions: {d: 'n * 2'}}\n",
        ITEMS,
    )
    paths = make_run(pipeline, tmp_path / "runs")
    assert Runner(paths).run().status is RunStatus.COMPLETE
    conn = sqlite3.connect(paths.ledger)
    runners = conn.execute("SELECT id, host, pid FROM runners").fetchall()
    owners = conn.execute("SELECT DISTINCT claimed_by FROM unit_steps").fetchall()
    conn.close()
    assert [(host, pid) for _, host, pid in runners] == [(socket.gethostname(), os.getpid())]
    assert owners == [(runners[0][0],)]


def test_a_queued_row_that_is_no_command_is_rejected_and_the_run_goes_on(tmp_path: Path) -> None:
    import sqlite3

    from octopipe.engine.commands import Rename
    from octopipe.store import open_run_store

    pipeline = write_pipeline(
        tmp_path / "p",
        "    - {name: double, scope: expression, expressions: {d: 'n * 2'}}\n",
        ITEMS,
    )
    paths = make_run(pipeline, tmp_path / "runs")
    conn = sqlite3.connect(paths.ledger, isolation_level=None)
    for kind, args in (("explode", "{}"), ("rename", '{"display_name": 5}'), ("kill", "{oops")):
        conn.execute(
            "INSERT INTO commands(ts, kind, args_json, state) VALUES ('t', ?, ?, 'pending')",
            (kind, args),
        )
    conn.close()
    with open_run_store(paths.ledger) as store:
        store.enqueue_command(Rename("after the bad ones"))

    assert Runner(paths).run().status is RunStatus.COMPLETE
    conn = sqlite3.connect(paths.ledger)
    rows = conn.execute("SELECT kind, state, result FROM commands ORDER BY id").fetchall()
    conn.close()
    assert rows[:2] == [
        ("explode", "rejected", "unknown command 'explode'"),
        ("rename", "rejected", "command 'rename': display_name must be a string, not 5"),
    ]
    assert rows[2][:2] == ("kill", "rejected") and "is corrupt" in rows[2][2]
    assert rows[3] == ("rename", "applied", "renamed to 'after the bad ones'")
    log = paths.log.read_text()
    assert "[COMMAND] explode: unknown command 'explode'" in log
    assert "[COMMAND] rename: command 'rename': display_name must be a string, not 5" in log
    with open_run_store(paths.ledger, readonly=True) as store:
        assert store.run_info().display_name == "after the bad ones"
