"""The built-in analysis gives Octobatch's numbers, tables and CSV columns, byte for byte, on a
fixed data set (golden outputs of Octobatch's own script: see tests/fixtures/analysis/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from octopipe.core.analysis import analyze, captured, parse_analysis_args, render

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "analysis"
CASES: dict[str, list[str]] = json.loads((FIXTURES / "cases.json").read_text())
RECORDS = [json.loads(line) for line in (FIXTURES / "records.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_text_as_octobatchs_script(case: str) -> None:
    spec = parse_analysis_args(CASES[case])
    text = captured(render(analyze(RECORDS, spec)))
    golden = (FIXTURES / "golden" / f"{case}.out").read_bytes().decode("utf-8")
    assert text == golden


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_notes_as_octobatchs_script(case: str) -> None:
    """The script's stderr notes about skipped records are ours too (the lines about reading
    chunk files are not: octopipe reads the ledger)."""
    result = analyze(RECORDS, parse_analysis_args(CASES[case]))
    stderr = (FIXTURES / "golden" / f"{case}.err").read_text().splitlines()
    assert [line for line in stderr if line.startswith("Note:")] == result.notes


def test_the_golden_cases_cover_what_they_claim() -> None:
    """Guard against a fixture that lost its edge cases: skipped records, an empty group, ties."""
    numeric = analyze(RECORDS, parse_analysis_args(CASES["numeric_custom_table"]))
    assert numeric.skipped == 6 and "silver" not in [r.group for r in numeric.numeric_rows]
    counts = analyze(RECORDS, parse_analysis_args(CASES["count_net_table"]))
    nets = [r.net for r in counts.count_rows]
    assert len(nets) != len(set(nets)) and nets == sorted(nets, reverse=True)
