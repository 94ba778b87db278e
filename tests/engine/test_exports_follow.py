"""Exports follow the ledger: every change of results (revalidation, retry, repair, a resume)
leaves ``outputs/`` as an export of the ledger as it is now; CSV cells a spreadsheet would run
as formulas are neutralised (CSV only)."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path

from octopipe.engine.commands import Repair, Retry
from octopipe.engine.control import change_run
from octopipe.engine.exports import exports_current, write_export
from octopipe.engine.paths import RunPaths
from octopipe.engine.runner import Runner
from octopipe.store.ledger import Ledger
from support.admin import expression_pipeline, make_run

FAILING = "10 // ((n + 1) % 3)"  # raises for every item whose n % 3 == 2
LABEL = 1


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["unit_id"] for line in path.read_text().splitlines()]


def _exported(paths: RunPaths) -> tuple[list[str], list[str]]:
    return (
        _ids(paths.outputs / "label_validated.jsonl"),
        _ids(paths.outputs / "label_failures.jsonl"),
    )


def _complete_with_failures(tmp_path: Path) -> RunPaths:
    pipeline = expression_pipeline(tmp_path / "pipe", n_items=6, inverse=FAILING)
    paths = make_run(pipeline, tmp_path / "runs", "r", drive=False)
    Runner(paths).run()  # with exports
    assert _exported(paths) == (
        ["item000", "item001", "item003", "item004"],
        ["item002", "item005"],
    )
    return paths


def test_resuming_a_complete_run_refreshes_exports_the_ledger_has_moved_past(
    tmp_path: Path,
) -> None:
    paths = _complete_with_failures(tmp_path)
    ledger = Ledger.open(paths.ledger)
    try:  # a csv export asked for by hand, then a change of verdict made through the ledger alone (no export step of its own)
        write_export(ledger, paths, LABEL, fmt="csv")
        uid = ledger.uid_of("item002")
        ledger.record_revalidation(uid, LABEL, delta={"label": "fixed", "inverse": 0})
        assert not exports_current(ledger, paths)
    finally:
        ledger.close()

    Runner(paths).run()  # the run is complete: nothing to do but bring the outputs up to date
    assert _exported(paths) == (
        ["item000", "item001", "item002", "item003", "item004"],
        ["item005"],
    )
    table = list(csv.DictReader(io.StringIO((paths.outputs / "label_validated.csv").read_text())))
    assert [row["unit_id"] for row in table] == _exported(paths)[0]  # the csv export too
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        assert exports_current(ledger, paths)
    finally:
        ledger.close()
    assert "[EXPORT] label_validated.jsonl" in paths.log.read_text().splitlines()[-1]


def test_retry_and_resume_keep_the_failure_exports_true(tmp_path: Path) -> None:
    paths = _complete_with_failures(tmp_path)
    message = change_run(paths, Retry(step_idx=LABEL, unit_ids=("item002",)))
    assert message.startswith("requeued 1 failed unit(s); refreshed ")
    assert "label_failures.jsonl" in message
    # item002 is pending again: it is no longer a failure
    assert _exported(paths) == (["item000", "item001", "item003", "item004"], ["item005"])

    Runner(paths).run()  # deterministic: it fails again, and the export says so
    assert _exported(paths) == (
        ["item000", "item001", "item003", "item004"],
        ["item002", "item005"],
    )


def test_repair_then_resume_exports_the_repaired_units(tmp_path: Path) -> None:
    paths = _complete_with_failures(tmp_path)
    ledger = Ledger.open(paths.ledger)
    try:  # silent attrition at the last step
        ledger._db.execute(
            "DELETE FROM unit_steps WHERE step_idx = 1 AND uid = ?", (ledger.uid_of("item004"),)
        )
    finally:
        ledger.close()
    assert change_run(paths, Repair()).startswith("requeued 1 missing unit(s); refreshed ")
    assert _exported(paths)[0] == ["item000", "item001", "item003"]
    Runner(paths).run()
    assert _exported(paths) == (
        ["item000", "item001", "item003", "item004"],
        ["item002", "item005"],
    )


FORMULAS = """\
items:
  - {name: a, note: "=HYPERLINK(\\"http://x\\")", n: -5}
  - {name: b, note: "+1+1", n: 1}
  - {name: c, note: "-2+3", n: 2}
  - {name: d, note: "@SUM(A1)", n: 3}
  - {name: e, note: "\\tcmd", n: 4}
  - {name: f, note: "\\rcmd", n: 5}
  - {name: g, note: "plain = text", n: 6}
  - {name: h, note: "x", n: 7, "=evil": "y"}
"""


def test_csv_cells_that_spreadsheets_would_run_are_neutralised(tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        textwrap.dedent(
            """
            pipeline:
              name: formulas
              steps:
                - name: copy
                  scope: expression
                  expressions:
                    twice: "n * 2"
            processing:
              strategy: direct
              items: {source: items.yaml, key: items, name_field: name}
            """
        )
    )
    (folder / "items.yaml").write_text(FORMULAS)
    paths = make_run(folder, tmp_path / "runs", "f")
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        out = write_export(ledger, paths, 0, fmt="csv")
        jsonl = write_export(ledger, paths, 0, fmt="jsonl")
    finally:
        ledger.close()
    rows = list(csv.reader(io.StringIO(out.path.read_bytes().decode(), newline="")))
    header, body = rows[0], rows[1:]
    assert header == ["unit_id", "name", "note", "n", "twice", "'=evil"]
    notes = {row[0]: row[2] for row in body}
    assert notes == {
        "a": '\'=HYPERLINK("http://x")',
        "b": "'+1+1",
        "c": "'-2+3",
        "d": "'@SUM(A1)",
        "e": "'\tcmd",
        "f": "'\rcmd",
        "g": "plain = text",
        "h": "x",
    }
    assert [row[3] for row in body][:2] == ["-5", "1"]  # numbers stay numbers
    # JSONL is data, not a spreadsheet: written as stored
    first = json.loads(jsonl.path.read_text().splitlines()[0])
    assert first["note"] == '=HYPERLINK("http://x")' and first["n"] == -5
