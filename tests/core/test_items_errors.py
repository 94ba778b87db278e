"""Items that would silently corrupt a run are refused naming the file, the item and the line:
an unterminated CSV quote (which swallows every row after it), unit ids carrying newlines,
bidi overrides or other control characters, items nested past recursion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from octopipe.core.config_models import ProcessingSpec
from octopipe.core.items import count_items, iter_items
from octopipe.core.units import iter_units
from octopipe.errors import ConfigError, ConfigProblem


def only(exc: pytest.ExceptionInfo[ConfigError]) -> ConfigProblem:
    assert len(exc.value.problems) == 1, exc.value.message
    return exc.value.problems[0]


def direct(source: str, key: str | None = None, strategy: str = "direct") -> ProcessingSpec:
    spec: dict[str, object] = {"strategy": strategy, "items": {"source": source, "key": key}}
    if strategy != "direct":
        spec["positions"] = ["left", "right"]
    return ProcessingSpec.model_validate(spec)


# --- CSV quoting ------------------------------------------------------------------------------


def test_an_unterminated_csv_quote_is_refused_at_the_row_that_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('name,value\na,1\nb,"2\nc,3\nd,4\n')
    for read in (lambda: list(iter_items(path)), lambda: count_items(path)):
        with pytest.raises(ConfigError) as exc:
            read()
        problem = only(exc)
        assert (problem.file, problem.line) == (str(path), 3)
        assert problem.message == (
            'invalid CSV: the row starting on line 3 opens a quoted cell (") that is never '
            "closed, so it would swallow every line after it"
        )


def test_a_character_after_a_closing_quote_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('name,value\na,"1"x\n')
    with pytest.raises(ConfigError) as exc:
        list(iter_items(path))
    assert only(exc).line == 2
    assert only(exc).message == "invalid CSV: ',' expected after '\"' (row starting on line 2)"


def test_quoted_cells_may_span_lines(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('name,address\na,"1 Main St\nSpringfield"\nb,x\n')
    assert list(iter_items(path)) == [
        {"name": "a", "address": "1 Main St\nSpringfield"},
        {"name": "b", "address": "x"},
    ]


# --- unit ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown", "char"),
    [
        ("x\ny", "'x\\ny'", "U+000A (a line feed)"),
        ("ab\u202ecd", "'ab\\u202ecd'", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("tab\there", "'tab\\there'", "U+0009 (a tab)"),
        ("nul\x00", "'nul\\x00'", "U+0000 (a control character)"),
        ("zw\u200bj", "'zw\\u200bj'", "U+200B ZERO WIDTH SPACE"),
    ],
)
def test_a_unit_id_with_a_control_character_is_refused_naming_the_item(
    tmp_path: Path, name: str, shown: str, char: str
) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"name": "fine"}) + "\n" + json.dumps({"name": name}) + "\n")
    with pytest.raises(ConfigError) as exc:
        list(iter_units(direct("items.jsonl"), path))
    problem = only(exc)
    assert (problem.file, problem.line, problem.key_path) == (str(path), 2, "[1]")
    assert problem.message == (
        f"item 1 (line 2) has the unit id {shown}, which holds {char}; ids must be printable text"
    )


def test_names_joined_into_ids_are_checked_too(tmp_path: Path) -> None:
    path = tmp_path / "items.yaml"
    path.write_text('items:\n  - plain\n  - "evil\\u2066name"\n')
    with pytest.raises(ConfigError) as exc:
        iter_units(direct("items.yaml", key="items", strategy="permutation"), path)
    problem = only(exc)
    assert (problem.line, problem.key_path) == (3, "items[1]")
    assert "U+2066 LEFT-TO-RIGHT ISOLATE" in problem.message


def test_printable_unicode_ids_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    names = ["café", "東京", "naïve\u00a0space", "emoji 🐙"]
    path.write_text("".join(json.dumps({"name": n}) + "\n" for n in names))
    units = list(iter_units(direct("items.jsonl"), path))
    assert [u.id for u in units] == ["café", "東京", "naïve\u00a0space", "emoji_🐙"]


# --- nesting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["items.json", "items.jsonl"])
def test_json_nested_past_recursion_is_a_clear_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    deep = "[" * 100_000 + "]" * 100_000
    path.write_text(deep + "\n" if name.endswith("l") else deep)
    with pytest.raises(ConfigError) as exc:
        list(iter_items(path))
    problem = only(exc)
    assert problem.file == str(path)
    assert problem.message.endswith("is nested too deeply")
