"""The admin commands through ``octopipe.cli.cli`` (run in-process the way ``main`` runs it:
errors become a message and their exit code)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from pathlib import Path

import pytest

from octopipe.core.states import UnitStepState
from octopipe.engine.runner import Runner
from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock
from support.admin import (
    delete_rows,
    expression_pipeline,
    fail_llm_units,
    llm_pipeline,
    make_run,
    set_minimum,
)
from support.cli import invoke as octopipe


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


# --- verify / repair ------------------------------------------------------------------------


def test_verify_clean_run(tmp_path: Path, runs_dir: Path) -> None:
    make_run(expression_pipeline(tmp_path / "p", n_items=5), runs_dir, "clean")
    code, out, _ = octopipe("verify", "clean", "--runs-dir", runs_dir)
    assert code == 0, out
    assert "clean: every unit is accounted for" in out
    # expected, valid; then retrying, failed, pending, in flight and the six kinds of problem
    assert re.search(r"^label\s+5\s+5(\s+0){10}$", out, re.M), out
    code, out, _ = octopipe("verify", "clean", "--runs-dir", runs_dir, "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["steps"][1]["expected"] == 5


def _listed_ids(out: str, header: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    ids: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        ids += [part.strip() for part in line.split(",") if part.strip()]
    return ids


def test_verify_lists_every_missing_id_and_repair_requeues_them_all(
    tmp_path: Path, runs_dir: Path
) -> None:
    paths = make_run(expression_pipeline(tmp_path / "p", n_items=50, repeat=100), runs_dir, "big")
    deleted = delete_rows(paths, 1, 5_000)  # every row of the last step: silent attrition
    assert len(deleted) == 5_000

    code, out, _ = octopipe("verify", "big", "--runs-dir", runs_dir)
    assert code == 1
    listed = _listed_ids(out, "missing at label (5,000):")
    assert sorted(listed) == deleted  # every id, none capped, none cut by wrapping
    assert max(len(line) for line in out.splitlines()) <= 160  # wrapped to the page
    code, out, _ = octopipe("verify", "big", "--runs-dir", runs_dir, "--json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False
    assert sorted(data["steps"][1]["missing"]) == deleted

    code, out, _ = octopipe("repair", "big", "--runs-dir", runs_dir)
    assert code == 0 and "requeued 5000 missing unit(s)" in out
    assert octopipe("verify", "big", "--runs-dir", runs_dir)[0] == 0  # pending, not missing

    Runner(paths, export=False).run()
    code, out, _ = octopipe("status", "big", "--runs-dir", runs_dir, "--json")
    view = json.loads(out)
    assert view["status"] == "complete" and view["steps"][1]["valid"] == 5_000


# --- retry / info / rename / logs -------------------------------------------------------------


@pytest.fixture
def failing(tmp_path: Path, runs_dir: Path):
    pipeline = expression_pipeline(tmp_path / "p", n_items=6, inverse="10 // ((n + 1) % 3)")
    return make_run(pipeline, runs_dir, "failing")


def test_retry_cli(failing, runs_dir: Path) -> None:
    code, _, err = octopipe("retry", "failing", "--runs-dir", runs_dir, "--step", "nope")
    assert code == 2 and "no step 'nope' in this run; steps: double, label" in err
    code, _, err = octopipe("retry", "failing", "--runs-dir", runs_dir, "--stage", "vibes")
    assert code == 2 and "'vibes' is not one of" in err
    code, _, err = octopipe("retry", "failing", "--runs-dir", runs_dir, "--unit", "ghost")
    assert code == 2 and "no unit(s) 'ghost'" in err
    code, out, _ = octopipe(
        "retry", "failing", "--runs-dir", runs_dir, "--step", "label", "--stage", "expression",
        "--unit", "item002", "--json",
    )  # fmt: skip
    data = json.loads(out)
    assert code == 0 and data["message"] == "requeued 1 failed unit(s)" and data["applied"]
    ledger = Ledger.open(failing.ledger, readonly=True)
    try:
        assert ledger.unit_states("item002")[1] is UnitStepState.PENDING
        assert ledger.unit_states("item005")[1] is UnitStepState.EXHAUSTED
        assert len(ledger.attempts_for("item002", 1)) == 1
    finally:
        ledger.close()


def test_info_cli(failing, runs_dir: Path) -> None:
    code, out, _ = octopipe("info", "failing", "--runs-dir", runs_dir)
    assert code == 0
    assert f"snapshot   {failing.config_dir}" in out
    assert "options    provider=None, model=None, max_units=None, repeat=None, mode=" in out
    assert re.search(r"^label\s+expression\s+6\s+4\s+0\s+0\s+0\s+2\s+66\.7%$", out, re.M), out
    assert "label failures by stage: expression 2" in out
    assert "no live runner" in out and "[STATE] run running -> complete" in out
    code, out, _ = octopipe("info", "failing", "--runs-dir", runs_dir, "--json")
    data = json.loads(out)
    assert data["funnel"][1]["failed_by_stage"] == {"expression": 2}
    assert data["live"] is False and data["batches"] == {}
    assert data["snapshot"] == str(failing.config_dir)


def test_rename_and_logs(failing, runs_dir: Path) -> None:
    code, out, _ = octopipe("rename", "failing", "Nicer [name]", "--runs-dir", runs_dir)
    assert code == 0 and "renamed to 'Nicer [name]'" in out
    _, out, _ = octopipe("status", "failing", "--runs-dir", runs_dir, "--json")
    assert json.loads(out)["display_name"] == "Nicer [name]"

    log_lines = failing.log.read_text().splitlines()
    code, out, _ = octopipe("logs", "failing", "--runs-dir", runs_dir, "-n", "2")
    assert code == 0 and out.splitlines() == log_lines[-2:]
    code, out, _ = octopipe("logs", "failing", "--runs-dir", runs_dir, "-f", "-n", "100")
    assert code == 0 and out.splitlines() == log_lines  # not live: -f returns at once


def test_kill_asks_first(failing, runs_dir: Path, tmp_path: Path) -> None:
    paused = make_run(llm_pipeline(tmp_path / "l"), runs_dir, "waiting")
    code, _, err = octopipe("kill", "waiting", "--runs-dir", runs_dir, input="n\n")
    assert code == 130
    code, out, _ = octopipe("kill", "waiting", "--runs-dir", runs_dir, input="y\n")
    assert code == 0 and "status set from paused to killed" in out
    code, _, err = octopipe("kill", "failing", "--runs-dir", runs_dir, "--yes")
    assert code == 2 and "cannot be killed" in err
    code, out, _ = octopipe("pause", "failing", "--runs-dir", runs_dir)
    assert code == 0 and "nothing to pause" in out
    assert paused.exists()


# --- revalidate / export / archive ----------------------------------------------------------


def test_revalidate_cli(tmp_path: Path, runs_dir: Path) -> None:
    pipeline = llm_pipeline(tmp_path / "p", n_items=4, minimum=5)
    paths = make_run(pipeline, runs_dir, "judged")
    fail_llm_units(
        paths, "judge", {"item000": '{"score": 3}', "item001": "no json", "item002": None}
    )
    code, out, _ = octopipe("revalidate", "judged", "--runs-dir", runs_dir)
    assert code == 1 and "0 passed, 1 still failing, 1 unparseable, 1 skipped" in out
    # The run recorded the folder it was created from: the bare flag re-reads it (same rules).
    code, out, _ = octopipe("revalidate", "judged", "--runs-dir", runs_dir, "--use-source-config")
    assert code == 1 and "0 passed, 1 still failing" in out

    set_minimum(pipeline, 5, 1)
    code, out, _ = octopipe(
        "revalidate", "judged", "--runs-dir", runs_dir, "--use-source-config", pipeline, "--json"
    )
    data = json.loads(out)
    assert code == 1  # the unparseable answer and the provider failure remain
    assert (data["passed"], data["still_failing"], data["unparseable"], data["skipped"]) == (
        1,
        0,
        1,
        1,
    )
    holder = RunLock(paths.root)
    assert holder.try_acquire()
    try:
        code, _, err = octopipe("revalidate", "judged", "--runs-dir", runs_dir)
    finally:
        holder.release()
    assert code == 5 and "pause it first" in err


def test_export_cli(failing, runs_dir: Path) -> None:
    outputs = failing.outputs
    code, out, _ = octopipe("export", "failing", "--runs-dir", runs_dir)
    assert code == 0 and "4 validated record(s) of label" in out
    first = (outputs / "label_validated.jsonl").read_bytes()
    octopipe("export", "failing", "--runs-dir", runs_dir)
    assert (outputs / "label_validated.jsonl").read_bytes() == first

    for extra in (["--format", "csv"], ["--gzip"], ["--format", "csv", "--gzip"]):
        octopipe("export", "failing", "--runs-dir", runs_dir, "--step", "double", *extra)
    names = ("double_validated.csv", "double_validated.jsonl.gz", "double_validated.csv.gz")
    before = {n: (outputs / n).read_bytes() for n in names}
    for extra in (["--format", "csv"], ["--gzip"], ["--format", "csv", "--gzip"]):
        octopipe("export", "failing", "--runs-dir", runs_dir, "--step", "double", *extra)
    assert {n: (outputs / n).read_bytes() for n in names} == before
    assert (
        gzip.decompress(before["double_validated.csv.gz"])
        == (outputs / "double_validated.csv").read_bytes()
    )

    code, out, _ = octopipe("export", "failing", "--runs-dir", runs_dir, "--failures", "--json")
    files = json.loads(out)["files"]
    assert code == 0 and [(f["step"], f["records"]) for f in files] == [("double", 0), ("label", 2)]
    code, _, err = octopipe("export", "failing", "--runs-dir", runs_dir, "--step", "x")
    assert code == 2 and "no step 'x'" in err
    if importlib.util.find_spec("pyarrow") is None:
        code, _, err = octopipe("export", "failing", "--runs-dir", runs_dir, "--format", "parquet")
        assert code == 2 and "needs pyarrow" in err and "Traceback" not in err


def test_archive_cli(failing, runs_dir: Path, tmp_path: Path) -> None:
    make_run(llm_pipeline(tmp_path / "l"), runs_dir, "waiting")
    code, _, err = octopipe("archive", "waiting", "--runs-dir", runs_dir)
    assert code == 2 and "only finished runs" in err
    holder = RunLock(failing.root)
    assert holder.try_acquire()
    try:
        code, _, err = octopipe("archive", "failing", "--runs-dir", runs_dir)
    finally:
        holder.release()
    assert code == 5
    code, out, _ = octopipe("archive", "failing", "--runs-dir", runs_dir)
    assert code == 0 and (runs_dir / "_archive" / "failing" / "ledger.db").is_file()
    _, out, _ = octopipe("ps", "--runs-dir", runs_dir, "--all", "--json")
    assert {(r["name"], r["archived"]) for r in json.loads(out)} == {
        ("failing", True),
        ("waiting", False),
    }
    code, out, _ = octopipe("unarchive", "failing", "--runs-dir", runs_dir)
    assert code == 0 and (runs_dir / "failing" / "ledger.db").is_file()


# --- a ledger that cannot be used -----------------------------------------------------------


def test_corrupt_ledger_is_exit_4_with_one_line(failing, runs_dir: Path) -> None:
    for sidecar in ("ledger.db-wal", "ledger.db-shm"):
        (failing.root / sidecar).unlink(missing_ok=True)
    failing.ledger.write_bytes(b"this is not a ledger at all\n" * 200)
    for command in ("status", "verify", "info"):
        code, out, err = octopipe(command, "failing", "--runs-dir", runs_dir)
        assert code == 4, (command, out, err)
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("error: ") and "ledger.db" in err
        assert "Traceback" not in out + err
