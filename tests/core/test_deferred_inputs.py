"""Checking an answer reads the unit's input only when a check may read a field the answer
does not hold (``AnswerValidator`` with a ``DeferredRecord``), and the verdict is always the
one the whole record gives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octopipe.core.config_models import ValidationSpec
from octopipe.core.deferred import DeferredRecord, resolved
from octopipe.core.validation import AnswerValidator, Outcome


class Loader:
    """An input record and how many times it was read."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.reads = 0

    def __call__(self) -> dict[str, Any]:
        self.reads += 1
        return self.record


def validator(**data: Any) -> AnswerValidator:
    return AnswerValidator(None, ValidationSpec.model_validate(data))


def both(check: AnswerValidator, answer: dict[str, Any], inputs: dict[str, Any]) -> tuple:
    """(outcome with the record deferred, its loader, outcome with the record given)."""
    loader = Loader(inputs)
    deferred = check.validate_answer(json.dumps(answer), DeferredRecord(loader))
    eager = check.validate_answer(json.dumps(answer), dict(inputs))
    return deferred, loader, eager


def same(a: Outcome, b: Outcome) -> bool:
    return (a.ok, a.output, a.record, a.warnings, a.violations) == (
        b.ok, b.output, b.record, b.warnings, b.violations,
    )  # fmt: skip


def test_rules_on_the_answers_own_fields_never_read_the_input() -> None:
    check = validator(rules=[{"expr": "0 <= score <= 100"}], required=["score"])
    for score, ok in ((42, True), (420, False)):
        deferred, loader, eager = both(check, {"score": score}, {"topic": "t", "score": -1})
        assert loader.reads == 0
        assert deferred.ok is ok and same(deferred, eager)


@pytest.mark.parametrize(
    ("spec", "answer", "ok"),
    [
        # the rule's expression names an input field
        ({"rules": [{"expr": "score <= limit"}]}, {"score": 5}, True),
        ({"rules": [{"expr": "score <= limit"}]}, {"score": 50}, False),
        # its message does
        (
            {"rules": [{"expr": "score < 10", "error": "{score} over {topic}"}]},
            {"score": 50},
            False,
        ),
        # its condition does
        ({"rules": [{"expr": "score < 10", "when": "topic == 't'"}]}, {"score": 50}, False),
        # a required field the input holds and the answer does not
        ({"required": ["topic", "score"]}, {"score": 1}, True),
        ({"types": {"limit": "integer"}}, {"score": 1}, True),
        # an input field named like a builtin hides it: len(...) calls the input's 3
        ({"rules": [{"expr": "len(tags) > 0"}]}, {"tags": [1]}, False),
    ],
)
def test_a_check_that_may_read_an_input_field_reads_the_input(
    spec: dict[str, Any], answer: dict[str, Any], ok: bool
) -> None:
    inputs = {"topic": "t", "limit": 20, "len": 3}
    deferred, loader, eager = both(validator(**spec), answer, inputs)
    assert loader.reads == 1
    assert deferred.ok is ok and same(deferred, eager)


def test_a_message_naming_an_input_field_shows_its_value() -> None:
    check = validator(rules=[{"expr": "score < 10", "error": "{score} too high for {topic}"}])
    deferred, _, _ = both(check, {"score": 50}, {"topic": "chess"})
    assert [v.message for v in deferred.violations] == ["50 too high for chess"]


def test_the_answers_fields_hide_the_inputs_of_the_same_name_unread() -> None:
    check = validator(rules=[{"expr": "x == 2"}])
    deferred, loader, _ = both(check, {"x": 2}, {"x": 1, "y": 1})
    assert deferred.ok and loader.reads == 0
    assert deferred.record == {"x": 2, "y": 1}  # asked for: read now, once
    assert loader.reads == 1


def test_no_checks_after_the_schema_read_nothing() -> None:
    deferred, loader, eager = both(AnswerValidator(None, None), {"a": 1}, {"u": 0})
    assert deferred.ok and loader.reads == 0
    assert same(deferred, eager)


def test_a_deferred_record_is_loaded_once_and_reads_as_its_record() -> None:
    loader = Loader({"a": 1, "b": [2]})
    record = DeferredRecord(loader)
    assert not record.loaded and repr(record) == "DeferredRecord(<unread>)"
    assert record["a"] == 1 and dict(record) == {"a": 1, "b": [2]} and len(record) == 2
    assert resolved(record) is loader.record and loader.reads == 1
    assert resolved(loader.record) is loader.record


NAMES = st.sampled_from(["a", "b", "c", "len", "max"])
VALUES = st.one_of(
    st.integers(-5, 5), st.lists(st.integers(-5, 5), max_size=3), st.text(max_size=3)
)
RULES = st.sampled_from(
    [
        {"expr": "a > 0"},
        {"expr": "a > b", "error": "{a} vs {c}"},
        {"expr": "len(c) < 3"},
        {"expr": "max(a, 1) == 1"},
        {"expr": "c != ''", "when": "b == 1"},
        {"expr": "a + b < 4", "level": "warning"},
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(NAMES, VALUES, max_size=5),
    st.dictionaries(NAMES, VALUES, max_size=5),
    st.lists(RULES, min_size=1, max_size=3),
    st.lists(NAMES, max_size=2),
)
def test_a_deferred_input_gives_the_verdict_the_whole_record_gives(
    inputs: dict[str, Any], answer: dict[str, Any], rules: list[dict[str, Any]], required: list[str]
) -> None:
    check = validator(rules=rules, required=required)
    deferred, loader, eager = both(check, answer, inputs)
    assert loader.reads <= 1
    assert same(deferred, eager)
