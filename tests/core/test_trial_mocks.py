"""The trial run never refuses a valid pipeline because of mock values, whatever path a mocked
value takes through expressions; a real error in an expression still fails ``validate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from octopipe.core.checker import CheckReport, check_pipeline
from octopipe.core.config import load_pipeline
from octopipe.core.schema_values import schema_value

SCHEMA = {
    "type": "object",
    "required": ["cards", "label", "count_text", "picks"],
    "properties": {
        "cards": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "label": {"type": "string"},
        "count_text": {"type": "string"},
        "picks": {"type": "array", "items": {"type": "integer"}, "maxItems": 2},
    },
}


def pipeline(tmp_path: Path, expressions: dict[str, str], *, before: dict[str, str] | None = None):
    """An item -> (expression step ``before``) -> LLM step ``play`` -> expression step ``check``."""
    folder = tmp_path / "p"
    (folder / "templates").mkdir(parents=True)
    (folder / "schemas").mkdir()
    (folder / "templates" / "play.jinja2").write_text("Play {{ name }} with {{ start }}")
    (folder / "schemas" / "play.json").write_text(json.dumps(SCHEMA))
    (folder / "items.yaml").write_text("things:\n  - {name: first, start: 3}\n")
    steps = []
    if before:
        steps.append({"name": "prepare", "scope": "expression", "expressions": before})
    steps += [
        {"name": "play"},
        {"name": "check", "scope": "expression", "expressions": expressions},
    ]
    config = {
        "pipeline": {"steps": steps},
        "processing": {"strategy": "direct", "items": {"source": "items.yaml", "key": "things"}},
        "prompts": {"templates": {"play": "play.jinja2"}},
        "schemas": {"files": {"play": "play.json"}},
    }
    (folder / "config.yaml").write_text(json.dumps(config))
    return folder


def check(folder: Path) -> CheckReport:
    return check_pipeline(load_pipeline(folder))


def levels(report: CheckReport) -> list[tuple[str, str]]:
    return [(p.level, p.key_path) for p in report.problems]


MOCK_PATHS = {
    "an alias chain into a lookup (Blackjack's _p_cards = player_cards_used)": {
        "_values": "{'A': 1, 'K': 10}",
        "_hand": "cards",
        "_same": "_hand",
        "total": "sum([_values[c] for c in _same])",
    },
    "arithmetic on a mocked string": {
        "_text": "count_text",
        "doubled": "_text + 1",
    },
    "indexing into a mocked list past its end": {
        "_p": "picks",
        "third": "_p[5] * 2",
    },
    "a mocked string used as a lookup key several steps away": {
        "_key": "label.upper()",
        "_table": "{'HEARTS': 1}",
        "points": "_table[_key] + start",
    },
}


@pytest.mark.parametrize("exprs", MOCK_PATHS.values(), ids=MOCK_PATHS.keys())
def test_a_failure_made_by_a_mock_value_is_a_warning_not_an_error(tmp_path, exprs) -> None:
    report = check(pipeline(tmp_path, exprs))
    assert report.ok, [p.render() for p in report.problems]
    [(level, key)] = levels(report)
    assert level == "warning"
    assert key.startswith("pipeline.steps[1].expressions.")
    assert "mock LLM answer" in report.problems[0].message


def test_taint_follows_a_loop_that_feeds_values_back(tmp_path) -> None:
    folder = pipeline(tmp_path, {"_acc": "0"})
    config = json.loads((folder / "config.yaml").read_text())
    config["pipeline"]["steps"][1] = {
        "name": "check",
        "scope": "expression",
        "init": {"i": "0", "acc": "0"},
        "expressions": {"acc": "acc + (int(word) if i > 0 else 0)", "word": "label", "i": "i + 1"},
        "loop_until": "i >= 3",
    }
    (folder / "config.yaml").write_text(json.dumps(config))
    report = check(folder)
    assert report.ok and [p.level for p in report.problems] == ["warning"]


REAL_ERRORS = {
    "a type error on item data": ({"bad": "start + 'x'"}, "pipeline.steps[1].expressions.bad"),
    "a lookup with a key from item data": (
        {"bad": "{'a': 1}[name]"},
        "pipeline.steps[1].expressions.bad",
    ),
    "a division by zero of computed data": (
        {"_z": "start - 3", "bad": "10 / _z"},
        "pipeline.steps[1].expressions.bad",
    ),
}


@pytest.mark.parametrize(("exprs", "key"), REAL_ERRORS.values(), ids=REAL_ERRORS.keys())
def test_a_real_error_after_mocked_steps_still_fails_validate(tmp_path, exprs, key) -> None:
    """Mock answers exist by then, but the failing expression reads none of them."""
    report = check(pipeline(tmp_path, {"_cards": "cards", **exprs}))
    assert not report.ok
    [problem] = report.errors
    assert problem.key_path == key
    assert "trial run of the first unit failed at expression" in problem.message
    assert "mock" not in problem.message


def test_a_real_error_before_any_llm_step_fails_validate(tmp_path) -> None:
    report = check(pipeline(tmp_path, {"ok": "1"}, before={"bad": "name * name"}))
    [problem] = report.errors
    assert problem.key_path == "pipeline.steps[0].expressions.bad"


def test_an_undefined_name_and_a_syntax_error_still_fail_validate(tmp_path) -> None:
    report = check(pipeline(tmp_path, {"a": "cards_typo", "b": "label +"}))
    assert {(p.level, p.key_path) for p in report.errors} == {
        ("error", "pipeline.steps[1].expressions.a"),
        ("error", "pipeline.steps[1].expressions.b"),
    }


def test_a_raising_rule_on_mocked_fields_is_a_warning_and_on_item_fields_an_error(
    tmp_path,
) -> None:
    folder = pipeline(tmp_path, {"ok": "1"})
    config = json.loads((folder / "config.yaml").read_text())
    config["validation"] = {
        "play": {"rules": [{"name": "mocked", "expr": "int(count_text) > 0"}]},
        "check": {"rules": [{"name": "real", "expr": "start + name"}]},
    }
    (folder / "config.yaml").write_text(json.dumps(config))
    report = check(folder)
    assert [(p.level, p.key_path) for p in report.problems] == [
        ("warning", "validation.play"),
        ("error", "validation.check"),
    ]


def test_a_false_rule_does_not_stop_the_trial(tmp_path) -> None:
    """The step after a rule that is merely false is still tried (and its error found)."""
    folder = pipeline(tmp_path, {"flag": "start > 100"})
    config = json.loads((folder / "config.yaml").read_text())
    config["pipeline"]["steps"].append(
        {"name": "later", "scope": "expression", "expressions": {"bad": "start + 'x'"}}
    )
    config["validation"] = {"check": {"rules": [{"name": "big", "expr": "flag == True"}]}}
    (folder / "config.yaml").write_text(json.dumps(config))
    report = check(folder)
    [problem] = report.problems
    assert (problem.level, problem.key_path) == ("error", "pipeline.steps[2].expressions.bad")


def test_mocks_borrow_the_units_own_values_where_they_fit() -> None:
    record = {"label": "kept", "deck": ["7", "K", "A"], "noise": 3}
    value = schema_value(SCHEMA, "unit", like=record)
    assert value["label"] == "kept"
    assert set(value["cards"]) <= {"7", "K", "A"} and len(value["cards"]) >= 2
    assert all(isinstance(p, int) for p in value["picks"])
    # a record value that does not fit the property's schema is not borrowed
    assert schema_value(SCHEMA, "unit", like={"label": 5})["label"] != 5
