"""YAML from a pipeline folder is loaded under guard: alias bombs, recursive aliases, duplicate
keys and absurd nesting are refused with the file and the line, before anything expands."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from octopipe.core.items import load_items
from octopipe.core.yamlpos import MAX_ALIAS_EXPANSION, MAX_NESTING, load_yaml_with_positions
from octopipe.errors import ConfigError, ConfigProblem


def laughs(levels: int, width: int = 9, key: str = "lol") -> str:
    """The billion-laughs document: each level is ``width`` aliases of the level below."""
    lines = [f"{key}0: &{key}0 [" + ", ".join(['"ha"'] * width) + "]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*{key}{level - 1}"] * width)
        lines.append(f"{key}{level}: &{key}{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def first_level_over_budget() -> int:
    """Level of ``laughs`` whose aliases push the expansion past the budget."""
    size, added = 10, 0  # level 0: a list of nine scalars
    for level in range(1, 10):
        added += 9 * size
        size = 1 + 9 * size
        if added > MAX_ALIAS_EXPANSION:
            return level
    raise AssertionError("no level is over the budget")


def only(exc: pytest.ExceptionInfo[ConfigError]) -> ConfigProblem:
    assert len(exc.value.problems) == 1, exc.value.message
    return exc.value.problems[0]


def test_billion_laughs_is_refused_quickly_naming_the_line() -> None:
    text = laughs(10)
    started = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        load_yaml_with_positions(text, "config.yaml")
    problem = only(exc)
    assert time.monotonic() - started < 2
    assert problem.file == "config.yaml"
    assert problem.line == first_level_over_budget() + 1
    assert problem.message == (
        f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values "
        "(an alias bomb?); write the values out or use fewer aliases"
    )


def test_aliases_within_the_budget_load_as_usual() -> None:
    data, positions = load_yaml_with_positions(laughs(3), "config.yaml")
    assert data["lol1"] == [["ha"] * 9] * 9
    assert len(data["lol2"]) == 9
    assert positions.line_of(("lol2",)) == 3


def test_recursive_alias_is_refused_naming_the_anchor_line() -> None:
    text = "pipeline:\n  name: x\nloop: &me\n  - 1\n  - *me\n"
    with pytest.raises(ConfigError) as exc:
        load_yaml_with_positions(text, "config.yaml")
    problem = only(exc)
    assert (problem.file, problem.line) == ("config.yaml", 5)
    assert problem.message == "recursive alias *me: the value anchored on line 3 contains itself"


def test_recursive_merge_key_is_refused() -> None:
    text = "base: &b\n  x: 1\n  <<: *b\n"
    with pytest.raises(ConfigError) as exc:
        load_yaml_with_positions(text, "config.yaml")
    assert only(exc).line == 3
    assert "recursive alias *b" in only(exc).message


def test_duplicate_key_names_both_lines() -> None:
    text = "api:\n  model: a\n  max_tokens: 10\n  model: b\n"
    with pytest.raises(ConfigError) as exc:
        load_yaml_with_positions(text, "config.yaml")
    problem = only(exc)
    assert (problem.file, problem.line, problem.key_path) == ("config.yaml", 4, "api.model")
    assert problem.message == "duplicate key 'model' (first on line 2)"


def test_every_duplicate_key_is_reported() -> None:
    text = "a: 1\nb: 2\na: 3\nc:\n  - {x: 1, x: 2}\n"
    with pytest.raises(ConfigError) as exc:
        load_yaml_with_positions(text, "config.yaml")
    found = [(p.line, p.key_path, p.message) for p in exc.value.problems]
    assert found == [
        (3, "a", "duplicate key 'a' (first on line 1)"),
        (5, "c[0].x", "duplicate key 'x' (first on line 5)"),
    ]


def test_keys_that_differ_in_type_are_not_duplicates() -> None:
    data, _ = load_yaml_with_positions('1: int\n"1": str\n', "config.yaml")
    assert data == {1: "int", "1": "str"}


def test_merge_keys_may_override_merged_values() -> None:
    data, _ = load_yaml_with_positions("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\n", "c.yaml")
    assert data["m"] == {"x": 3, "y": 2}


def test_absurd_nesting_is_refused_with_its_line() -> None:
    text = "deep:\n  " + "[" * (MAX_NESTING + 5) + "]" * (MAX_NESTING + 5) + "\n"
    with pytest.raises(ConfigError) as exc:
        load_yaml_with_positions(text, "config.yaml")
    problem = only(exc)
    assert problem.line == 2
    assert problem.message == f"values are nested more than {MAX_NESTING} levels deep"


# --- items files ------------------------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_alias_bomb_in_items_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "items.yaml", laughs(10) + "items:\n  - {name: a, v: *lol9}\n")
    with pytest.raises(ConfigError) as exc:
        load_items(path, "items")
    problem = only(exc)
    assert problem.file == str(path)
    assert problem.line is not None and problem.line <= 10
    assert "aliases expand to more than" in problem.message


def test_recursive_alias_in_items_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "items.yaml", "items:\n  - &r {name: a, value: [*r]}\n")
    with pytest.raises(ConfigError) as exc:
        load_items(path, "items")
    problem = only(exc)
    assert (problem.file, problem.line) == (str(path), 2)
    assert problem.message == "recursive alias *r: the value anchored on line 2 contains itself"


def test_duplicate_key_in_an_item_names_both_lines(tmp_path: Path) -> None:
    text = "items:\n  - name: a\n    value: 1\n    value: 2\n"
    path = write(tmp_path, "items.yaml", text)
    with pytest.raises(ConfigError) as exc:
        load_items(path, "items")
    problem = only(exc)
    assert (problem.line, problem.key_path) == (4, "items[0].value")
    assert problem.message == "duplicate key 'value' (first on line 3)"


def test_items_with_shared_anchors_still_load(tmp_path: Path) -> None:
    text = (
        "defaults: &d {colour: red}\nitems:\n  - {name: a, style: *d}\n  - {name: b, style: *d}\n"
    )
    path = write(tmp_path, "items.yaml", text)
    assert load_items(path, "items") == [
        {"name": "a", "style": {"colour": "red"}},
        {"name": "b", "style": {"colour": "red"}},
    ]
