"""Items files: the four formats, CSV typing, streaming, and errors that name file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.items import (
    convert_cell,
    count_items,
    item_line,
    iter_items,
    iter_items_with_lines,
    load_item_list,
    load_items,
)
from octopipe.errors import ConfigError, ConfigProblem


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problem_of(excinfo: pytest.ExceptionInfo[ConfigError]) -> ConfigProblem:
    assert len(excinfo.value.problems) == 1
    return excinfo.value.problems[0]


# --- YAML and JSON ----------------------------------------------------------------------------


def test_yaml_key_selects_the_list_inside_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "cards.yaml", "deck: standard\ncards:\n  - name: Fool\n  - name: Sun\n")
    assert load_items(path, "cards") == [{"name": "Fool"}, {"name": "Sun"}]
    assert list(iter_items(path, "cards")) == [{"name": "Fool"}, {"name": "Sun"}]


def test_yaml_without_key_returns_the_top_level_as_it_is(tmp_path: Path) -> None:
    listed = write(tmp_path, "list.yml", "- 1\n- two\n")
    mapped = write(tmp_path, "map.yaml", "moods: [calm]\ntopics: [rain]\n")
    assert load_items(listed, None) == [1, "two"]
    assert load_items(mapped, None) == {"moods": ["calm"], "topics": ["rain"]}


def test_yaml_timestamps_stay_strings_so_items_remain_json(tmp_path: Path) -> None:
    path = write(tmp_path, "events.yaml", "- name: launch\n  date: 2024-03-01\n")
    items = load_items(path, None)
    assert items == [{"name": "launch", "date": "2024-03-01"}]
    json.dumps(items)


def test_json_items_with_key(tmp_path: Path) -> None:
    path = write(tmp_path, "items.json", json.dumps({"rows": [{"id": 1}, {"id": 2}]}))
    assert load_items(path, "rows") == [{"id": 1}, {"id": 2}]
    assert count_items(path, "rows") == 2


def test_missing_key_suggests_the_closest_one(tmp_path: Path) -> None:
    path = write(tmp_path, "items.yaml", "title: x\nscenarios:\n  - name: a\n")
    with pytest.raises(ConfigError) as excinfo:
        load_items(path, "scenario")
    problem = problem_of(excinfo)
    assert problem.file == str(path)
    assert problem.key_path == "scenario"
    assert problem.hint == "scenarios"
    assert "no key 'scenario'" in problem.message
    assert "(did you mean 'scenarios'?)" in str(excinfo.value)


def test_key_holding_a_mapping_is_refused_at_the_key_line(tmp_path: Path) -> None:
    path = write(tmp_path, "items.yaml", "title: x\ncards:\n  fool: 0\n")
    with pytest.raises(ConfigError) as excinfo:
        load_items(path, "cards")
    problem = problem_of(excinfo)
    assert (problem.line, problem.key_path) == (2, "cards")
    assert "must be a list of items, not a mapping" in problem.message


def test_key_on_a_top_level_list_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "items.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError) as excinfo:
        load_items(path, "cards")
    assert "holds a list, not a mapping" in problem_of(excinfo).message


def test_mapping_without_key_for_a_list_strategy_hints_the_list_key(tmp_path: Path) -> None:
    path = write(tmp_path, "items.yaml", "title: x\nstrategies:\n  - name: Pro\n")
    with pytest.raises(ConfigError) as excinfo:
        load_item_list(path, None)
    problem = problem_of(excinfo)
    assert problem.hint == "strategies"
    assert "set processing.items.key" in problem.message


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("42\n", "a int"),
        ("just text\n", "a string"),
        ("true\n", "a bool"),
        ('""\n', "an empty string"),
    ],
)
def test_scalar_top_level_is_refused(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, "items.yaml", text)
    with pytest.raises(ConfigError) as excinfo:
        load_items(path, None)
    assert (
        problem_of(excinfo).message == f"the items file must hold a list or a mapping, not {kind}"
    )


@pytest.mark.parametrize("name", ["empty.yaml", "empty.json", "empty.jsonl", "empty.csv"])
def test_empty_files_are_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "\n  \n")
    with pytest.raises(ConfigError) as excinfo:
        load_items(path, None)
    assert problem_of(excinfo).message == "the items file is empty"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "items.yaml", "cards:\n  - name: a\n  - name: [b\n")
    with pytest.raises(ConfigError) as excinfo:
        load_items(path, "cards")
    problem = problem_of(excinfo)
    assert problem.message.startswith("invalid YAML")
    assert problem.line == 4


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "items.json", '{"rows": [\n  {"id": 1},\n  {"id": 2,}\n]}\n')
    with pytest.raises(ConfigError) as excinfo:
        load_items(path, "rows")
    assert problem_of(excinfo).line == 3


def test_unsupported_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_items(write(tmp_path, "items.txt", "a"), None)
    assert "unsupported items file type '.txt'" in problem_of(excinfo).message
    with pytest.raises(ConfigError) as excinfo:
        load_items(tmp_path / "absent.yaml", None)
    assert problem_of(excinfo).message == "items file not found"


def test_item_line_finds_yaml_items(tmp_path: Path) -> None:
    path = write(tmp_path, "items.yaml", "title: x\ncards:\n  - name: a\n\n  - name: b\n")
    assert item_line(path, "cards", 0) == 3
    assert item_line(path, "cards", 1) == 5


# --- JSONL --------------------------------------------------------------------------------------


def test_jsonl_skips_blank_lines_and_reports_item_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "items.jsonl", '{"id": 1}\n\n  \n{"id": 2}\r\n[3]\n"four"')
    assert list(iter_items_with_lines(path)) == [
        (1, {"id": 1}),
        (4, {"id": 2}),
        (5, [3]),
        (6, "four"),
    ]
    assert count_items(path) == 4
    assert load_items(path, None) == [{"id": 1}, {"id": 2}, [3], "four"]


def test_jsonl_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = write(tmp_path, "items.jsonl", '{"id": 1}\n{"id": 2}\n\n{"id": 3,,}\n{"id": 4}\n')
    with pytest.raises(ConfigError) as excinfo:
        list(iter_items(path))
    problem = problem_of(excinfo)
    assert problem.line == 4
    assert problem.message.startswith("line 4 is not valid JSON")


def test_jsonl_is_streamed_items_come_before_a_later_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path, "items.jsonl", '{"id": 1}\nnot json\n')
    stream = iter_items(path)
    assert next(stream) == {"id": 1}
    with pytest.raises(ConfigError):
        next(stream)


def test_jsonl_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "items.jsonl", b'{"id": 1}\n{"id": 2}\n{"id": "\xff"}\n')
    with pytest.raises(ConfigError) as excinfo:
        list(iter_items(path))
    assert problem_of(excinfo).line == 3


def test_jsonl_and_csv_take_no_key(tmp_path: Path) -> None:
    path = write(tmp_path, "items.jsonl", '{"id": 1}\n')
    with pytest.raises(ConfigError) as excinfo:
        iter_items(path, "rows")
    assert "a JSONL file is already a list of items" in problem_of(excinfo).message


# --- CSV ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("12", 12),
        ("-3", -3),
        ("0", 0),
        ("0.5", 0.5),
        ("-2.25", -2.25),
        ("1e3", 1000.0),
        ("1.5E-2", 0.015),
        ("true", True),
        ("false", False),
        ("", ""),
        ("007", "007"),
        ("+5", "+5"),
        (" 5", " 5"),
        ("5 ", "5 "),
        ("1.", "1."),
        (".5", ".5"),
        ("NaN", "NaN"),
        ("1e999", "1e999"),
        ("True", "True"),
        ("null", "null"),
        ("12abc", "12abc"),
        ("hello", "hello"),
    ],
)
def test_csv_cells_spelled_like_json_numbers_or_booleans_are_typed(cell: str, value: Any) -> None:
    converted = convert_cell(cell)
    assert converted == value
    assert type(converted) is type(value)


def test_csv_rows_become_typed_dicts_with_their_lines(tmp_path: Path) -> None:
    text = (
        '\ufeff name , count,ratio,ok,zip\nalpha,3,0.25,true,01234\n\n"be\nta",10,1e2,no,x\n,,,,\n'
    )
    path = write(tmp_path, "items.csv", text)
    assert list(iter_items_with_lines(path)) == [
        (2, {"name": "alpha", "count": 3, "ratio": 0.25, "ok": True, "zip": "01234"}),
        (4, {"name": "be\nta", "count": 10, "ratio": 100.0, "ok": "no", "zip": "x"}),
    ]
    assert count_items(path) == 2


def test_csv_ragged_row_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "items.csv", "name,count\na,1\nb\n")
    with pytest.raises(ConfigError) as excinfo:
        list(iter_items(path))
    problem = problem_of(excinfo)
    assert problem.line == 3
    assert problem.message == "row on line 3 has 1 cells but the header (line 1) has 2"


def test_csv_header_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        list(iter_items(write(tmp_path, "dup.csv", "name,count,name\na,1,b\n")))
    assert problem_of(excinfo).message == "CSV header repeats column(s) name"
    with pytest.raises(ConfigError) as excinfo:
        list(iter_items(write(tmp_path, "blank.csv", "name,,x\na,1,b\n")))
    assert problem_of(excinfo).message == "CSV header column 2 has no name"
    header_only = write(tmp_path, "only.csv", "name,count\n,\n")
    with pytest.raises(ConfigError) as excinfo:
        list(iter_items(header_only))
    assert problem_of(excinfo).message == "the CSV items file has a header but no rows"
    with pytest.raises(ConfigError) as excinfo:
        count_items(header_only)
    assert problem_of(excinfo).message == "the CSV items file has a header but no rows"
