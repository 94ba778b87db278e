"""engine.archive (only finished runs, never overwrite or nest) and engine.exports
(reproducible bytes, every field kept)."""

from __future__ import annotations

import builtins
import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from octopipe.engine.archive import archive_run, unarchive_run
from octopipe.engine.exports import write_export
from octopipe.engine.paths import ARCHIVE_DIR, resolve_run
from octopipe.errors import RunLocked, RunNotFound, UsageError
from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock
from support.admin import expression_pipeline, llm_pipeline, make_run


@pytest.fixture
def runs(tmp_path: Path):
    runs_dir = tmp_path / "runs"
    done = make_run(expression_pipeline(tmp_path / "p1", n_items=6), runs_dir, "done")
    paused = make_run(llm_pipeline(tmp_path / "p2"), runs_dir, "paused")  # waits at judge
    return runs_dir, done, paused


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_archive_round_trip(runs) -> None:
    runs_dir, done, _ = runs
    moved = archive_run(runs_dir, "done")
    assert moved.root == runs_dir.resolve() / ARCHIVE_DIR / "done"
    assert not done.root.exists() and moved.exists()
    assert resolve_run("done", runs_dir).root == moved.root
    with pytest.raises(UsageError, match="already archived"):
        archive_run(runs_dir, "done")
    back = unarchive_run(runs_dir, "done")
    assert back.root == done.root and back.exists()
    assert not (runs_dir / ARCHIVE_DIR / "done").exists()
    with pytest.raises(UsageError, match="not archived"):
        unarchive_run(runs_dir, "done")


def test_archive_refuses_unfinished_and_live_runs(runs) -> None:
    runs_dir, done, paused = runs
    with pytest.raises(UsageError, match="is paused; only finished runs"):
        archive_run(runs_dir, "paused")
    holder = RunLock(done.root)
    assert holder.try_acquire()
    try:
        with pytest.raises(RunLocked):
            archive_run(runs_dir, "done")
    finally:
        holder.release()
    assert done.exists() and paused.exists()
    with pytest.raises(RunNotFound):
        archive_run(runs_dir, "ghost")


def test_archive_never_overwrites_or_nests(runs) -> None:
    runs_dir, done, _ = runs
    squatter = runs_dir / ARCHIVE_DIR / "done"
    squatter.mkdir(parents=True)
    (squatter / "keep.txt").write_text("older run")
    before_src, before_dest = _tree(done.root), _tree(squatter)
    with pytest.raises(UsageError, match="already exists; nothing was moved"):
        archive_run(runs_dir, "done")
    assert _tree(done.root) == before_src and _tree(squatter) == before_dest
    assert not (squatter / "done").exists()

    # an empty folder in the way is not replaced either
    (squatter / "keep.txt").unlink()
    with pytest.raises(UsageError, match="already exists"):
        archive_run(runs_dir, "done")
    assert done.exists() and list(squatter.iterdir()) == []

    # and unarchive refuses to land on an existing run folder
    squatter.rmdir()
    archive_run(runs_dir, "done")
    (runs_dir / "done").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        unarchive_run(runs_dir, "done")
    assert (runs_dir / ARCHIVE_DIR / "done" / "ledger.db").is_file()


def test_archive_refuses_a_run_outside_the_runs_folder(runs, tmp_path: Path) -> None:
    runs_dir, _, _ = runs
    elsewhere = make_run(expression_pipeline(tmp_path / "p3", n_items=2), tmp_path / "other", "x")
    with pytest.raises(UsageError, match="not a run folder of"):
        archive_run(runs_dir, str(elsewhere.root))
    assert elsewhere.exists()
    moved = archive_run(runs_dir, str(runs_dir / "done"))  # by path, inside: fine
    assert moved.exists()


# --- exports --------------------------------------------------------------------------------


def test_exports_are_reproducible(runs) -> None:
    _, done, _ = runs
    ledger = Ledger.open(done.ledger, readonly=True)
    try:
        for fmt, compress in (("jsonl", False), ("csv", False), ("jsonl", True), ("csv", True)):
            first = write_export(ledger, done, 1, fmt=fmt, compress=compress)
            data = first.path.read_bytes()
            second = write_export(ledger, done, 1, fmt=fmt, compress=compress)
            assert second.path == first.path and second.path.read_bytes() == data
            assert first.records == 6
        plain = (done.outputs / "label_validated.jsonl").read_bytes()
        assert gzip.decompress((done.outputs / "label_validated.jsonl.gz").read_bytes()) == plain
        rows = [json.loads(line) for line in plain.decode().splitlines()]
        assert rows[0]["unit_id"] == "item000" and rows[0]["label"] == "even"
        table = list(
            csv.DictReader(io.StringIO((done.outputs / "label_validated.csv").read_text()))
        )
        assert [r["unit_id"] for r in table] == [r["unit_id"] for r in rows]
        assert not [p for p in done.outputs.iterdir() if p.name.startswith(".")]  # no temp left
    finally:
        ledger.close()


def test_csv_keeps_fields_only_some_records_have(runs) -> None:
    _, _, paused = runs
    ledger = Ledger.open(paused.ledger)
    try:
        claimed = ledger.claim_pending(1, 10)
        for n, unit in enumerate(claimed):
            delta = {"score": n, "note": "x,y"} if n == 2 else {"score": n}
            ledger.record_success(unit.uid, 1, delta)
        out = write_export(ledger, paused, 1, fmt="csv")
        table = list(csv.DictReader(io.StringIO(out.path.read_text())))
        assert list(table[0]) == ["unit_id", "name", "n", "target", "score", "note"]
        assert [r["note"] for r in table] == ["", "", "x,y", ""]
        failures = write_export(ledger, paused, 1, fmt="jsonl", failures=True)
        assert failures.records == 0 and failures.path.read_bytes() == b""
    finally:
        ledger.close()


def test_parquet_without_pyarrow_is_a_usage_error(runs, monkeypatch) -> None:
    _, done, _ = runs
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    ledger = Ledger.open(done.ledger, readonly=True)
    try:
        with pytest.raises(UsageError, match="pip install 'octopipe\\[parquet\\]'"):
            write_export(ledger, done, 1, fmt="parquet")
        with pytest.raises(UsageError, match="compressed internally"):
            write_export(ledger, done, 1, fmt="parquet", compress=True)
    finally:
        ledger.close()
    assert not (done.outputs / "label_validated.parquet").exists()


def test_parquet_round_trip(runs) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    _, done, _ = runs
    ledger = Ledger.open(done.ledger, readonly=True)
    try:
        first = write_export(ledger, done, 1, fmt="parquet")
        data = first.path.read_bytes()
        assert write_export(ledger, done, 1, fmt="parquet").path.read_bytes() == data
    finally:
        ledger.close()
    table = pq.read_table(first.path).to_pylist()
    assert len(table) == 6 and table[0]["unit_id"] == "item000"
