"""Clear errors and one vocabulary in the ledger's views: ``ps`` with an unusable ledger among
good ones, small and unknown costs, retrying/failed the same in JSON and tables, a damaged row
named by ``verify`` and ``export``, read-only folders refused with a message, not a
traceback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from octopipe.engine.paths import RunPaths
from octopipe.store.ledger import Ledger
from octopipe.store.records import AttemptRecord, Success
from support.admin import expression_pipeline, llm_pipeline, make_run
from support.cli import invoke as octopipe

FAILING = "10 // ((n + 1) % 3)"  # raises for n % 3 == 2: item002 and item005 of six


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def _priced(paths: RunPaths, cost: float | None) -> None:
    """Every unit pending at judge answered validly, each call costing ``cost`` (None:
    unknown price)."""
    ledger = Ledger.open(paths.ledger)
    try:
        claimed = ledger.claim_pending(1, 100)
        attempt = AttemptRecord(outcome="valid", provider="fake", model="m", cost_usd=cost)
        ledger.record_successes(1, [Success(c.uid, {"score": 7}, attempt) for c in claimed])
    finally:
        ledger.close()


# --- ps -------------------------------------------------------------------------------------


def test_ps_lists_the_good_runs_and_flags_an_unusable_one(tmp_path: Path, runs_dir: Path) -> None:
    make_run(expression_pipeline(tmp_path / "p1", n_items=3), runs_dir, "good")
    bad = make_run(expression_pipeline(tmp_path / "p2", n_items=3), runs_dir, "broken")
    for sidecar in ("ledger.db-wal", "ledger.db-shm"):
        (bad.root / sidecar).unlink(missing_ok=True)
    bad.ledger.write_bytes(b"not a ledger\n" * 100)

    code, out, err = octopipe("ps", "--runs-dir", runs_dir)
    assert code == 1, (out, err)
    assert re.search(r"^good\s+counter\s+complete\s+100%\s+3\s+3\s+0\s", out, re.M), out
    assert re.search(r"^broken\s+\?\s+unreadable\s", out, re.M), out
    assert "2 run(s)" in out
    assert err.startswith("warning: run broken cannot be read: run ledger ")
    assert "is not a SQLite database" in err and "Traceback" not in out + err

    code, out, _ = octopipe("ps", "--runs-dir", runs_dir, "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 1
    assert rows["good"]["status"] == "complete" and rows["good"]["error"] is None
    assert rows["broken"]["status"] == "unreadable"
    assert "is not a SQLite database" in rows["broken"]["error"]


def test_small_and_unknown_costs_are_shown_as_they_are(tmp_path: Path, runs_dir: Path) -> None:
    cheap = make_run(llm_pipeline(tmp_path / "p1", n_items=2), runs_dir, "cheap")
    _priced(cheap, 0.0009)  # two calls: $0.0018
    mystery = make_run(llm_pipeline(tmp_path / "p2", n_items=2), runs_dir, "mystery")
    _priced(mystery, None)

    code, out, _ = octopipe("ps", "--runs-dir", runs_dir)
    assert code == 0, out
    assert re.search(r"^cheap\s.*\s\$0\.0018\s+standard\s+batch\s", out, re.M), out
    assert re.search(r"^mystery\s.*\sunknown\s+standard\s+batch\s", out, re.M), out
    assert "2 run(s); total cost $0.0018 + unknown" in out
    _, out, _ = octopipe("status", "cheap", "--runs-dir", runs_dir)
    assert "cost $0.0018; tokens in 0, out 0" in out
    _, out, _ = octopipe("status", "mystery", "--runs-dir", runs_dir)
    assert "cost unknown (2 calls of unknown cost)" in out
    _, out, _ = octopipe("info", "cheap", "--runs-dir", runs_dir)
    assert "cost       $0.0018; tokens in 0" in out


# --- one vocabulary ----------------------------------------------------------------------------


def test_retrying_and_failed_mean_the_same_in_every_view(tmp_path: Path, runs_dir: Path) -> None:
    make_run(expression_pipeline(tmp_path / "p", n_items=6, inverse=FAILING), runs_dir, "f")

    _, out, _ = octopipe("status", "f", "--runs-dir", runs_dir, "--json")
    view = json.loads(out)
    label = view["steps"][1]
    assert view["failed"] == 2
    assert {k: label[k] for k in ("valid", "retrying", "failed", "pending", "in_flight")} == {
        "valid": 4,
        "retrying": 0,
        "failed": 2,
        "pending": 0,
        "in_flight": 0,
    }
    assert "exhausted" not in label
    _, out, _ = octopipe("status", "f", "--runs-dir", runs_dir)
    assert re.search(r"^label\s+expression\s+0\s+0\s+4\s+0\s+2$", out, re.M), out
    _, out, _ = octopipe("verify", "f", "--runs-dir", runs_dir, "--json")
    checked = json.loads(out)["steps"][1]
    assert (checked["retrying"], checked["failed"], checked["valid"]) == (0, 2, 4)
    assert "exhausted" not in checked
    _, out, _ = octopipe("verify", "f", "--runs-dir", runs_dir)
    assert re.search(r"^label\s+6\s+4\s+0\s+2\s+0\s+0(\s+0){6}$", out, re.M), out
    _, out, _ = octopipe("info", "f", "--runs-dir", runs_dir, "--json")
    funnel = json.loads(out)["funnel"][1]
    assert (funnel["retrying"], funnel["failed"]) == (0, 2)


# --- a damaged row ---------------------------------------------------------------------------


def test_a_corrupt_row_is_named_by_verify_and_export(tmp_path: Path, runs_dir: Path) -> None:
    paths = make_run(expression_pipeline(tmp_path / "p", n_items=4), runs_dir, "d")
    code, _, _ = octopipe("export", "d", "--runs-dir", runs_dir)
    assert code == 0
    before = (paths.outputs / "label_validated.jsonl").read_bytes()
    ledger = Ledger.open(paths.ledger)
    try:
        ledger._db.execute(
            "UPDATE unit_steps SET output_json = '{\"label\": ' WHERE step_idx = 1 AND uid = ?",
            (ledger.uid_of("item002"),),
        )
    finally:
        ledger.close()

    code, out, _ = octopipe("verify", "d", "--runs-dir", runs_dir, "--deep")
    assert code == 1, out
    assert "corrupt at label (1): a stored value cannot be read\n    item002\n" in out
    code, out, _ = octopipe("verify", "d", "--runs-dir", runs_dir)
    assert code == 0, out  # the accounting alone is whole: plain verify reads no stored value
    assert "--deep also reads every stored value" in out
    code, out, err = octopipe("export", "d", "--runs-dir", runs_dir)
    assert code == 4, (out, err)
    assert err.strip().splitlines() == [err.strip()]  # one line
    assert err.startswith(f"error: run ledger {paths.ledger}: unit 'item002' at step 'label': ")
    assert "its stored output cannot be read (not valid JSON" in err
    assert "Traceback" not in out + err
    assert (paths.outputs / "label_validated.jsonl").read_bytes() == before  # nothing half-made
    assert not [p for p in paths.outputs.iterdir() if p.name.startswith(".")]


# --- read-only folders -----------------------------------------------------------------------


def _writable(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` refuses new files: by mode bits, or (root ignores those) the immutable
    attribute."""
    folder.chmod(0o555)
    immutable = False
    try:
        if _writable(folder):
            done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
            immutable = done.returncode == 0
        if _writable(folder):
            pytest.skip("this machine offers no way to make a folder read-only for this user")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        folder.chmod(0o755)


def test_export_into_a_read_only_outputs_folder_is_a_clear_error(
    tmp_path: Path, runs_dir: Path
) -> None:
    paths = make_run(expression_pipeline(tmp_path / "p", n_items=2), runs_dir, "ro")
    with read_only(paths.outputs):
        code, out, err = octopipe("export", "ro", "--runs-dir", runs_dir)
    assert code == 4, (out, err)
    assert re.fullmatch(
        rf"error: cannot write export {re.escape(str(paths.outputs))}/?\S*: "
        r"(permission denied|operation not permitted)\n",
        err,
    ), err
    assert "Traceback" not in out + err


def test_a_new_run_in_a_read_only_runs_folder_is_a_clear_error(
    tmp_path: Path, runs_dir: Path
) -> None:
    pipeline = expression_pipeline(tmp_path / "p", n_items=2)
    runs_dir.mkdir()
    with read_only(runs_dir):
        results = [
            octopipe("run", pipeline, "--runs-dir", runs_dir, "--yes", "--run", "x"),
            octopipe("init", pipeline, "--runs-dir", runs_dir, "--run", "y"),
        ]
    for code, out, err in results:
        assert code == 4, (out, err)
        assert f"error: cannot write a new run in {runs_dir}: " in err, err
        assert "Traceback" not in out + err
    assert os.listdir(runs_dir) == []


def test_a_retry_that_cannot_refresh_the_exports_says_it_was_applied(
    tmp_path: Path, runs_dir: Path
) -> None:
    paths = make_run(expression_pipeline(tmp_path / "p", n_items=6, inverse=FAILING), runs_dir, "f")
    assert octopipe("export", "f", "--runs-dir", runs_dir)[0] == 0
    with read_only(paths.outputs):
        code, out, err = octopipe("retry", "f", "--runs-dir", runs_dir, "--unit", "item002")
    assert code == 4, (out, err)
    assert err.startswith(f"error: cannot write export {paths.outputs}/")
    assert "(retry was applied: requeued 1 failed unit(s); the exports stay stale" in err
    assert "[COMMAND] retry: requeued 1 failed unit(s)" in paths.log.read_text()
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        assert ledger.unit_states("item002")[1].value == "pending"
    finally:
        ledger.close()
    assert octopipe("export", "f", "--runs-dir", runs_dir)[0] == 0  # writable again: fine
