"""The runner drives local steps through the ledger to a consistent end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from octopipe.core.states import RunStatus, UnitStepState
from octopipe.core.steps import CompiledPipeline
from octopipe.engine.fingerprint import open_snapshot
from octopipe.engine.local_chunks import local_chains, run_local_chunk
from octopipe.engine.paths import RunPaths
from octopipe.engine.queries import run_status
from octopipe.engine.runner import Runner
from octopipe.errors import RunLocked
from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock
from support.paths import EXAMPLES
from support.runner import make_run, write_pipeline

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


THREE_STEPS = (
    "    - {name: a, scope: expression, expressions: {pair: '(n, n + 1)', keyed: '{1: n}'}}\n"
    '    - {name: b, scope: expression, expressions: {same: "pair == [n, n + 1]", '
    'k: "sorted(keyed)"}}\n'
    "    - {name: c, scope: expression, expressions: {"
    "bad: '1 // (n - 4)'}}\n"
)


def compile_run(paths: RunPaths) -> CompiledPipeline:
    with Ledger.open(paths.ledger, readonly=True) as ledger:
        return CompiledPipeline(open_snapshot(ledger, paths))


def test_one_chunk_carries_units_through_consecutive_local_steps(tmp_path: Path) -> None:
    """One pass records every step of the chunk's units (each step has its own valid row),
    and a later step reads what a run reading the ledger would read: the earlier step's
    output as stored JSON (the tuple a list, the integer key a string)."""
    pipeline = write_pipeline(tmp_path / "p", THREE_STEPS, ITEMS)
    paths = make_run(pipeline, tmp_path / "runs")
    compiled = compile_run(paths)
    chains = local_chains(compiled)
    assert [c.name for c in chains[0]] == ["b", "c"] and [c.name for c in chains[1]] == ["c"]
    with Ledger.open(paths.ledger) as ledger:
        outcome = run_local_chunk(ledger, 0, compiled.steps[0], 1_000, then=chains[0])
        assert outcome.done == 30
        counts = ledger.counts()
        assert counts[0][UnitStepState.VALID] == 30 and counts[1][UnitStepState.VALID] == 30
        assert counts[2][UnitStepState.VALID] == 29 and counts[2][UnitStepState.EXHAUSTED] == 1
        assert not ledger.counts()[2].get(UnitStepState.PENDING)
        records = dict(ledger.iter_valid(1))
        [failure] = list(ledger.iter_failures(2))
    assert all(r["same"] is True and r["k"] == ["1"] for r in records.values())
    assert failure.unit_id == "u4" and "division" in json.dumps(failure.errors)


def test_a_chunk_stopped_mid_unit_leaves_that_unit_pending_at_its_first_step(
    tmp_path: Path,
) -> None:
    pipeline = write_pipeline(tmp_path / "p", THREE_STEPS, ITEMS)
    paths = make_run(pipeline, tmp_path / "runs")
    compiled = compile_run(paths)
    asked = iter(range(1_000))
    with Ledger.open(paths.ledger) as ledger:
        # stop turns true while the 4th unit computes (each unit asks at least once per step)
        outcome = run_local_chunk(
            ledger,
            0,
            compiled.steps[0],
            1_000,
            then=local_chains(compiled)[0],
            stop_requested=lambda: next(asked) >= 10,
        )
        counts = ledger.counts()
    assert outcome.done == counts[0][UnitStepState.VALID] == counts[1][UnitStepState.VALID]
    assert 0 < outcome.done < 30
    assert counts[0][UnitStepState.PENDING] == 30 - outcome.done
    assert not counts[1].get(UnitStepState.PENDING) and not counts[2].get(UnitStepState.PENDING)


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
