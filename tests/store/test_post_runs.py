"""The ledger records post-processing: what ran, when, how it ended, from which results."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from octopipe.errors import StoreError
from octopipe.store import schema
from octopipe.store.ledger import Ledger
from support.ledger import WALK_CLASSIFY_JUDGE, run_meta


def test_a_run_then_a_finish_is_the_latest_row_of_its_action(tmp_path: Path) -> None:
    with Ledger.create(tmp_path / "l.db", run_meta(), WALK_CLASSIFY_JUDGE) as ledger:
        first = ledger.start_post_run(0, "post_process[0]", "Counts", "analysis", ["a"], "c.txt", 3)
        ledger.finish_post_run(first, "failed", 1, "No results found to analyze.")
        again = ledger.start_post_run(0, "post_process[0]", "Counts", "analysis", ["a"], "c.txt", 4)
        ledger.finish_post_run(again, "ok", 0, None)
        skipped = ledger.start_post_run(
            1, "post_process[1]", "Mine", "script", ["python", "x.py"], "m.txt", 4,
            outcome="skipped", detail="needs --allow-scripts",
        )  # fmt: skip
        latest = ledger.post_runs()
        assert [(r.action, r.outcome, r.exit_code, r.results_version) for r in latest] == [
            ("post_process[0]", "ok", 0, 4),
            ("post_process[1]", "skipped", None, 4),
        ]
        assert latest[1].id == skipped and latest[1].command == ["python", "x.py"]
        assert latest[1].finished_at is not None and latest[1].detail == "needs --allow-scripts"
        history = ledger.post_history("post_process[0]")
        assert [(r.outcome, r.detail) for r in history] == [
            ("failed", "No results found to analyze."),
            ("ok", None),
        ]


def test_only_a_running_row_can_end(tmp_path: Path) -> None:
    with Ledger.create(tmp_path / "l.db", run_meta(), WALK_CLASSIFY_JUDGE) as ledger:
        row = ledger.start_post_run(0, "a", "a", "gzip", [], None, 0)
        ledger.finish_post_run(row, "ok", 0, None)
        with pytest.raises(StoreError, match="is not running"):
            ledger.finish_post_run(row, "failed", 1, "again")
        with pytest.raises(ValueError):
            ledger.start_post_run(0, "a", "a", "gzip", [], None, 0, outcome="ok")


def test_a_ledger_made_before_post_runs_is_upgraded_and_keeps_its_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    with monkeypatch.context() as patch:
        patch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        Ledger.create(path, run_meta(), WALK_CLASSIFY_JUDGE).close()
    with pytest.raises(StoreError, match="needs 0002_post_runs"):
        Ledger.open(path, readonly=True)
    with Ledger.open(path) as ledger:
        assert ledger.run_info().name == "run-1" and ledger.post_runs() == []
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY seq")]
    assert names == [name for name, _ in schema.MIGRATIONS]
    conn.close()
