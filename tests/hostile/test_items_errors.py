"""Items files that would corrupt a run quietly (rows swallowed by an open quote, ids that
rewrite the terminal) are refused by validate and run, naming the file and the line, once."""

from __future__ import annotations

import json

import pytest

from support.hostile import Sandbox

CSV_CONFIG = ("    source: items.yaml\n    key: items\n", "    source: items.csv\n")


def refused_everywhere(sandbox: Sandbox, where: str, message: str) -> None:
    validated = sandbox.octopipe("validate", sandbox.pipeline)
    ran = sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "x")
    for result in (validated, ran):
        assert result.code == 2, result
        assert f"{where}: {message}" in result.err, result
        assert result.err.count(message) == 1, result
        assert "Traceback" not in result.text, result
    assert not (sandbox.runs / "x").exists()
    sandbox.assert_contained(validated, ran)


def test_an_unterminated_csv_quote_is_refused(sandbox: Sandbox) -> None:
    sandbox.edit_config(*CSV_CONFIG)
    sandbox.write("items.csv", 'name,value\na,1\nb,"2\nc,3\nd,4\n')
    refused_everywhere(
        sandbox,
        "items.csv:3",
        'invalid CSV: the row starting on line 3 opens a quoted cell (") that is never closed',
    )


def test_a_bad_csv_row_is_reported_once(sandbox: Sandbox) -> None:
    sandbox.edit_config(*CSV_CONFIG)
    sandbox.write("items.csv", "name,value\na,1\nb,2,3\n")
    refused_everywhere(
        sandbox, "items.csv:3", "row on line 3 has 3 cells but the header (line 1) has 2"
    )


@pytest.mark.parametrize(
    ("name", "shown", "char"),
    [
        ("b\u202etxt.exe", "'b\\u202etxt.exe'", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("b\nc", "'b\\nc'", "U+000A (a line feed)"),
    ],
)
def test_a_unit_id_with_control_characters_is_refused(
    sandbox: Sandbox, name: str, shown: str, char: str
) -> None:
    sandbox.write(
        "items.yaml",
        f"items:\n  - {{name: a, value: 1}}\n  - {{name: {json.dumps(name)}, value: 2}}\n",
    )
    refused_everywhere(
        sandbox,
        "items.yaml:3 [items[1]]",
        f"item 1 (line 3) has the unit id {shown}, which holds {char}; ids must be printable text",
    )
