"""Answer validation: parsing and repair, schema coercion, schema errors, business rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from octopipe.core.coercion import compile_schema
from octopipe.core.config_models import ValidationSpec
from octopipe.core.validation import (
    AnswerParseError,
    AnswerValidator,
    Outcome,
    Violation,
    parse_answer,
)
from octopipe.errors import ExpressionError, OctopipeError, UnsafeExpressionError


def spec(**data: Any) -> ValidationSpec:
    return ValidationSpec.model_validate(data)


def rules_only(**data: Any) -> AnswerValidator:
    return AnswerValidator(None, spec(**data))


def errors(outcome: Outcome) -> list[tuple[str, str, str]]:
    return [(v.stage, v.rule, v.path) for v in outcome.violations]


# --- parsing and repair -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```JSON\n{"a": 1}\n```', {"a": 1}),
        ('```\n{"a": 1}\n```', {"a": 1}),
        ('Here you go:\n```json\n{"a": 1}\n```\nAnything else?', {"a": 1}),
        ('```python\nx = 1\n```\n```json\n{"a": 1}\n```', {"a": 1}),
        ('```json\n{"a": [1, 2], "b": "x', {"a": [1, 2], "b": "x"}),  # unclosed fence
        ('Sure! {"a": {"b": 2}} Hope this helps.', {"a": {"b": 2}}),
        ('{"a": 1} and then {"b": 2}', {"a": 1}),
        ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}),
        ("{'a': 'x', 'b': 'it''s'}", None),  # any repair is fine, as long as it is an object
        ("{'a': 'x'}", {"a": "x"}),
        ('{"a": 1, "b": {"c": [1, 2', {"a": 1, "b": {"c": [1, 2]}}),
        ('{"a": +5, "b": +1.5}', {"a": 5, "b": 1.5}),
        ('  \n {"a": 1} \n ', {"a": 1}),
        ("{}", {}),
    ],
)
def test_parse_repairs(raw: str, expected: dict[str, Any] | None) -> None:
    parsed, repaired = parse_answer(raw)
    assert isinstance(parsed, dict)
    if expected is not None:
        assert parsed == expected
    assert repaired is (raw.strip() not in ('{"a": 1}', "{}"))


@pytest.mark.parametrize(
    "value",
    [
        "ends with a newline\n",
        "\n",
        "",
        "tab\t and form feed \f and slash /",
        'backslash then escape: \\" \\\u00e9 \\\x1f',
        "emoji \U0001f600 and \U00010000",
        ["a", ""],
        ["a", []],
        [{}, {"k": [[]]}],
        {"nested": ["", "  "]},
    ],
)
@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_repair_keeps_values_exact(value: Any, indent: int | None, ensure_ascii: bool) -> None:
    """json_repair alone drops or alters these; the parser shields them from it."""
    obj = {"value": value, "n": 1}
    text = json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii)
    broken = text[:-1].rstrip() + ",\n}"
    assert parse_answer(broken) == (obj, True)
    assert parse_answer(text.replace("/", "\\/")[:-1] + ",}") == (obj, True)


def test_plain_json_is_not_marked_repaired() -> None:
    assert parse_answer('{"a": [1, {"b": null}]}') == ({"a": [1, {"b": None}]}, False)


@pytest.mark.parametrize(
    "raw",
    [
        '{"response": "{\\"a\\": 1}"}',
        '{"response": "```json\\n{\\"a\\": 1}\\n```"}',
        '{"response": "  {\\"a\\": 1,}  "}',
    ],
)
def test_double_wrapped_answer_is_unwrapped(raw: str) -> None:
    assert parse_answer(raw) == ({"a": 1}, True)


def test_response_key_that_is_not_json_is_kept() -> None:
    assert parse_answer('{"response": "a sentence"}') == ({"response": "a sentence"}, False)
    assert parse_answer('{"response": "{broken"}')[0] != {}


def test_response_wrapper_unwrapped_when_schema_keys_are_missing() -> None:
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    validator = AnswerValidator(schema, None)
    raw = json.dumps({"response": '```json\n{"a": "3"}\n```', "note": "x"})
    outcome = validator.validate_answer(raw, {})
    assert outcome.ok and outcome.output == {"a": 3} and outcome.repaired


def test_response_wrapper_kept_when_the_step_declares_response() -> None:
    schema = {"type": "object", "properties": {"response": {"type": "string"}}}
    validator = AnswerValidator(schema, None)
    outcome = validator.validate_answer('{"response": "{\\"a\\": 1}"}', {})
    assert outcome.ok and outcome.output == {"response": '{"a": 1}'}
    by_rule = rules_only(required=["response"])
    outcome = by_rule.validate_answer('{"response": "{\\"a\\": 1}"}', {})
    assert outcome.output == {"response": '{"a": 1}'}


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "no json here",
        "[1, 2, 3]",
        '[{"a": 1}]',
        "42",
        '"a string"',
        "true",
        "null",
        "{ I cannot answer that }",
        "{",
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": -Infinity}',
        '{"a": 1e999}',
        'Here: {"a": NaN, "b": 1,}',
        '```json\n{"a": [1, NaN]}\n```',
    ],
)
def test_unusable_answers_fail_at_parse(raw: str) -> None:
    with pytest.raises(AnswerParseError):
        parse_answer(raw)
    outcome = AnswerValidator(None, None).validate_answer(raw, {"x": 1})
    assert not outcome.ok
    assert outcome.stage == "parse"
    assert outcome.output is None and outcome.record is None
    assert errors(outcome) == [("parse", "parse", "")]


def test_answer_parse_error_is_an_octopipe_error() -> None:
    assert issubclass(AnswerParseError, OctopipeError)


def test_deeply_nested_answer_fails_cleanly() -> None:
    with pytest.raises(AnswerParseError):
        parse_answer("[" * 100_000)
    outcome = AnswerValidator(None, None).validate_answer('{"a": ' + "[" * 100_000, {})
    assert outcome.stage == "parse"


# --- coercion ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        ({"type": "integer"}, "7", 7),
        ({"type": "integer"}, " -7 ", -7),
        ({"type": "integer"}, "+7", 7),
        ({"type": "integer"}, "3.0", 3),
        ({"type": "integer"}, "1e3", 1000),
        ({"type": "integer"}, 3.0, 3),
        ({"type": "integer"}, "3.5", "3.5"),
        ({"type": "integer"}, 3.5, 3.5),
        ({"type": "integer"}, "seven", "seven"),
        ({"type": "integer"}, "1_000", "1_000"),
        ({"type": "integer"}, True, True),
        ({"type": "number"}, "2.5", 2.5),
        ({"type": "number"}, "-1e-3", -0.001),
        ({"type": "number"}, "4", 4),
        ({"type": "number"}, "nan", "nan"),
        ({"type": "number"}, "inf", "inf"),
        ({"type": "number"}, "1e999", "1e999"),
        ({"type": "boolean"}, "true", True),
        ({"type": "boolean"}, " FALSE ", False),
        ({"type": "boolean"}, "True", True),
        ({"type": "boolean"}, "yes", "yes"),
        ({"type": "boolean"}, 1, 1),
        ({"type": "string"}, "  keep me  ", "  keep me  "),
        ({"type": "string"}, 5, 5),
        ({"type": "array"}, "a", ["a"]),
        ({"type": "array"}, 5, [5]),
        ({"type": "array"}, {"k": 1}, [{"k": 1}]),
        ({"type": "array"}, None, None),
        ({"type": "array"}, '["a", "b"]', ["a", "b"]),
        ({"type": "array"}, "[not json", ["[not json"]),
        ({"type": "array", "items": {"type": "integer"}}, "7", [7]),
        ({"type": "array", "items": {"type": "integer"}}, '[1, "2"]', [1, 2]),
        ({"type": "object"}, '{"k": 1}', {"k": 1}),
        ({"type": "object"}, "{oops", "{oops"),
        ({"enum": ["Major", "Minor"]}, " major ", "Major"),
        ({"enum": ["Major", "Minor"]}, "MINOR", "Minor"),
        ({"enum": ["Major", "Minor"]}, "other", "other"),
        ({"type": "string", "enum": ["a", "A"]}, " a", " a"),  # ambiguous: left alone
        ({"enum": [1, 2, None]}, "2", 2),
        ({"enum": [True, False]}, "TRUE", True),
        ({"const": "Yes"}, "yes", "Yes"),
        ({"type": ["integer", "null"]}, "5", 5),
        ({"type": ["boolean", "integer"]}, "true", True),
        ({"type": ["string", "integer"]}, "5", "5"),
    ],
)
def test_coercion_table(schema: dict[str, Any], value: Any, expected: Any) -> None:
    result = compile_schema(schema).coerce(value)
    assert result == expected
    assert type(result) is type(expected)


def test_coercion_walks_nested_objects_arrays_and_refs() -> None:
    schema = {
        "$defs": {
            "card": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "suit": {"enum": ["hearts", "spades"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            }
        },
        "type": "object",
        "properties": {
            "cards": {"type": "array", "items": {"$ref": "#/$defs/card"}},
            "best": {"$ref": "#/$defs/card"},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]},
            "extra": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    }
    answer = {
        "cards": [{"value": "3", "suit": "Hearts"}, {"value": 4, "suit": "spades", "tags": "x"}],
        "best": {"value": "10"},
        "pair": ["1", "false"],
        "extra": {"a": "1.5", "b": 2},
        "untouched": "7",
    }
    assert compile_schema(schema).coerce(answer) == {
        "cards": [{"value": 3, "suit": "hearts"}, {"value": 4, "suit": "spades", "tags": ["x"]}],
        "best": {"value": 10},
        "pair": [1, False],
        "extra": {"a": 1.5, "b": 2},
        "untouched": "7",
    }


def test_coercion_is_copy_on_write() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "b": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "c": {"type": "array", "items": {"type": "integer"}},
        },
    }
    compiled = compile_schema(schema)
    answer = {"a": {"n": "1"}, "b": {"n": 2}, "c": [1, 2]}
    snapshot = json.loads(json.dumps(answer))
    coerced = compiled.coerce(answer)
    assert answer == snapshot  # the input is never modified
    assert coerced is not answer and coerced["a"] is not answer["a"]
    assert coerced["b"] is answer["b"] and coerced["c"] is answer["c"]
    valid = {"a": {"n": 1}, "b": {"n": 2}, "c": [1]}
    assert compiled.coerce(valid) is valid


def test_coercion_of_recursive_schema() -> None:
    schema = {
        "$defs": {
            "tree": {
                "type": "object",
                "properties": {
                    "v": {"type": "integer"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/tree"}},
                },
            }
        },
        "$ref": "#/$defs/tree",
    }
    answer = {"v": "1", "kids": [{"v": "2", "kids": {"v": "3"}}]}
    expected = {"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}
    assert compile_schema(schema).coerce(answer) == expected


def test_coercion_any_of_picks_a_branch_that_then_validates() -> None:
    schema = {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 0}]}
    compiled = compile_schema(schema)
    assert compiled.coerce("5") == 5
    assert compiled.coerce(None) is None
    assert compiled.coerce("-5") == "-5"  # the branch's coercion would still be invalid
    one_of = compile_schema({"oneOf": [{"type": "boolean"}, {"type": "array"}]})
    assert one_of.coerce("false") is False
    assert one_of.coerce("x") == ["x"]


def test_coercion_of_unusual_schemas_never_raises() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/missing"}, "b": {"$ref": "other.json#/x"}},
        "patternProperties": {"^n_": {"type": "integer"}},
        "additionalProperties": False,
    }
    compiled = compile_schema(schema)
    assert compiled.coerce({"a": "1", "b": "2", "n_x": "3"}) == {"a": "1", "b": "2", "n_x": 3}
    assert compiled.coerce({("tuple",): "odd key"}) == {("tuple",): "odd key"}


def test_quick_check_agrees_with_jsonschema_on_hand_picked_cases() -> None:
    schema = {
        "type": "object",
        "required": ["n"],
        "properties": {
            "n": {"type": "integer", "minimum": 0, "exclusiveMaximum": 10},
            "s": {"type": "string", "minLength": 2, "pattern": "^[a-z]+$"},
            "e": {"enum": [1, "x", None, True]},
            "l": {"type": "array", "maxItems": 2, "items": {"type": "number"}},
            "o": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 5}]},
            "no": {"not": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    compiled = compile_schema(schema)
    reference = Draft202012Validator(schema)
    assert compiled.checkable
    cases = [
        {"n": 0},
        {"n": 10},
        {"n": 3.0},
        {"n": True},
        {"n": 1, "s": "ab"},
        {"n": 1, "s": "a"},
        {"n": 1, "s": "AB"},
        {"n": 1, "e": 1.0},
        {"n": 1, "e": False},
        {"n": 1, "e": True},
        {"n": 1, "e": None},
        {"n": 1, "l": [1, 2.5]},
        {"n": 1, "l": [1, 2, 3]},
        {"n": 1, "l": ["1"]},
        {"n": 1, "o": 7},
        {"n": 1, "o": 7.5},
        {"n": 1, "o": 3.5},
        {"n": 1, "no": 1},
        {"n": 1, "no": "x"},
        {"n": 1, "zzz": 1},
        {},
    ]
    for case in cases:
        assert compiled.quick_check(case) == reference.is_valid(case), case


# --- schema stage -----------------------------------------------------------------------------

CARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["cards", "total"],
    "properties": {
        "total": {"type": "integer"},
        "cards": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["value"],
                "properties": {"value": {"type": "integer", "maximum": 11}},
            },
        },
    },
}


def test_schema_errors_are_all_reported_with_dotted_paths_sorted() -> None:
    validator = AnswerValidator(CARD_SCHEMA, None)
    raw = json.dumps(
        {
            "total": "many",
            "cards": [{"value": 1}] * 2 + [{"value": 20}] + [{"value": 1}] * 7 + [{"v": 1}],
        }
    )
    outcome = validator.validate_answer(raw, {"unit": 1})
    assert not outcome.ok and outcome.stage == "schema"
    assert errors(outcome) == [
        ("schema", "schema_maximum", "cards[2].value"),
        ("schema", "schema_required", "cards[10]"),
        ("schema", "schema_type", "total"),
    ]
    assert outcome.record is None
    assert outcome.output is not None and outcome.output["total"] == "many"
    assert all(v.level == "error" for v in outcome.violations)


def test_strict_mode_does_not_coerce() -> None:
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    raw = '{"score": "7"}'
    assert AnswerValidator(schema, None).validate_answer(raw, {}).ok
    strict = AnswerValidator(schema, None, coerce=False).validate_answer(raw, {})
    assert errors(strict) == [("schema", "schema_type", "score")]


def test_schema_with_unsupported_keywords_still_validates() -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "uniqueItems": True}},
        "dependentRequired": {"a": ["b"]},
    }
    validator = AnswerValidator(schema, None)
    assert validator.validate_answer('{"tags": ["x", "y"]}', {}).ok
    assert errors(validator.validate_answer('{"tags": ["x", "x"]}', {})) == [
        ("schema", "schema_uniqueItems", "tags")
    ]
    assert validator.validate_answer('{"tags": "x", "a": 1}', {}).stage == "schema"


def test_invalid_schema_is_refused_at_construction() -> None:
    with pytest.raises(SchemaError):
        AnswerValidator({"type": "no-such-type"}, None)


def test_unresolvable_ref_becomes_a_schema_violation() -> None:
    validator = AnswerValidator({"properties": {"a": {"$ref": "#/$defs/nope"}}}, None)
    outcome = validator.validate_answer('{"a": 1}', {})
    assert outcome.stage == "schema"
    assert validator.validate_answer('{"b": 1}', {}).ok


# --- coercion reaches the rules -----------------------------------------------------------------


def test_coerced_record_reaches_rules_and_is_stored() -> None:
    schema = {
        "type": "object",
        "properties": {"score": {"type": "integer"}, "ok": {"type": "boolean"}},
    }
    validator = AnswerValidator(
        schema,
        spec(
            types={"score": "integer", "ok": "boolean"},
            ranges={"score": [0, 10]},
            rules=[{"expr": "score > 5"}, {"expr": "ok is True"}],
        ),
    )
    outcome = validator.validate_answer('{"score": "7", "ok": "true"}', {"topic": "t"})
    assert outcome.ok, outcome.violations
    assert outcome.output == {"score": 7, "ok": True}
    assert outcome.record == {"topic": "t", "score": 7, "ok": True}
    assert type(outcome.record["score"]) is int
    failing = validator.validate_answer('{"score": "3", "ok": "true"}', {})
    assert errors(failing) == [("rules", "score > 5", "")]


def test_output_overrides_input_fields_in_record() -> None:
    validator = rules_only(rules=[{"expr": "x == 2 and y == 1"}])
    outcome = validator.validate_answer('{"x": 2}', {"x": 1, "y": 1})
    assert outcome.ok and outcome.record == {"x": 2, "y": 1} and outcome.output == {"x": 2}


# --- rules ------------------------------------------------------------------------------------


def test_no_spec_no_schema_accepts_any_object() -> None:
    outcome = AnswerValidator(None, None).validate_answer('{"a": 1}', {"u": 0})
    assert outcome == Outcome(True, {"a": 1}, {"u": 0}, (), (), False)
    assert outcome.record == {"u": 0, "a": 1}
    assert outcome.stage is None


def test_required_missing_or_null_short_circuits() -> None:
    validator = rules_only(
        required=["a", "b", "c"],
        types={"c": "string"},
        rules=[{"expr": "False"}],
    )
    outcome = validator.validate_answer('{"a": null, "c": 5}', {})
    assert errors(outcome) == [("rules", "required", "a"), ("rules", "required", "b")]
    assert "null" in outcome.violations[0].message
    assert "missing" in outcome.violations[1].message


def test_required_can_be_satisfied_by_input_fields() -> None:
    assert rules_only(required=["topic"]).validate_answer("{}", {"topic": "x"}).ok


@pytest.mark.parametrize(
    ("type_name", "good", "bad"),
    [
        ("integer", [0, -3, 10**30], [True, 1.5, "1", 2.0]),
        ("int", [5], [False]),
        ("number", [1, 1.5], [True, "1.5"]),
        ("float", [1, 2.5], [False]),
        ("string", ["", "x"], [1, ["x"]]),
        ("str", ["x"], [8]),
        ("boolean", [True, False], [0, "true"]),
        ("bool", [True], [1]),
        ("array", [[], [1]], [{}, "x"]),
        ("list", [[1]], ["[1]"]),
        ("object", [{}, {"a": 1}], [[], "x"]),
        ("dict", [{}], [[]]),
    ],
)
def test_types(type_name: str, good: list[Any], bad: list[Any]) -> None:
    validator = AnswerValidator(None, spec(types={"v": type_name}))
    for value in good:
        assert validator.validate_record({"v": value}, {}).ok, value
    for value in bad:
        outcome = validator.validate_record({"v": value}, {})
        assert errors(outcome) == [("rules", "types", "v")], value


def test_types_skip_absent_and_null_fields() -> None:
    validator = rules_only(types={"v": "integer"})
    assert validator.validate_answer("{}", {}).ok
    assert validator.validate_answer('{"v": null}', {}).ok


def test_ranges_inclusive_open_ended_and_non_numbers_skipped() -> None:
    validator = rules_only(ranges={"a": [1, 10], "b": [None, 0], "c": [0.5, None]})
    ok = validator.validate_answer('{"a": 1, "b": -100, "c": 0.5}', {})
    assert ok.ok
    assert validator.validate_answer('{"a": 10, "b": 0, "c": 1e9}', {}).ok
    assert validator.validate_answer('{"a": "x", "b": true, "c": [1]}', {}).ok
    bad = validator.validate_answer('{"a": 11, "b": 0.1, "c": 0.4}', {})
    assert errors(bad) == [
        ("rules", "ranges", "a"),
        ("rules", "ranges", "b"),
        ("rules", "ranges", "c"),
    ]
    assert bad.violations[0].message == "field 'a' = 11 is outside [1, 10]"
    assert bad.violations[1].message == "field 'b' = 0.1 is outside [-, 0]"
    assert validator.validate_record({"a": float("nan")}, {}).stage == "rules"


def test_enums_case_insensitive_for_strings() -> None:
    validator = rules_only(enums={"kind": ["Major", "minor"], "n": [1, 2], "flag": [True]})
    assert validator.validate_answer('{"kind": "MAJOR", "n": 2, "flag": true}', {}).ok
    assert validator.validate_answer('{"kind": "Minor", "n": 1.0}', {}).ok
    bad = validator.validate_answer('{"kind": "other", "n": true, "flag": 1}', {})
    assert errors(bad) == [
        ("rules", "enums", "kind"),
        ("rules", "enums", "n"),
        ("rules", "enums", "flag"),
    ]


def test_rule_order_types_ranges_enums_rules() -> None:
    validator = rules_only(
        types={"a": "string"},
        ranges={"b": [0, 1]},
        enums={"c": ["x"]},
        rules=[{"name": "last", "expr": "False"}],
    )
    outcome = validator.validate_answer('{"a": 1, "b": 2, "c": "y"}', {})
    assert [v.rule for v in outcome.violations] == ["types", "ranges", "enums", "last"]


def test_rule_failing_raising_and_default_messages() -> None:
    validator = rules_only(
        rules=[
            {"name": "positive", "expr": "n > 0"},
            {"expr": "n < 0"},
            {"expr": "missing_field > 1", "error": "needs {missing_field}"},
        ]
    )
    outcome = validator.validate_answer('{"n": 0}', {})
    assert [(v.rule, v.message) for v in outcome.violations][:2] == [
        ("positive", "rule 'positive' failed"),
        ("n < 0", "rule 'n < 0' failed"),
    ]
    raised = outcome.violations[2]
    assert raised.rule == "missing_field > 1"
    assert raised.message.startswith("needs {missing_field} (NameError")


def test_when_false_skips_and_when_raising_warns() -> None:
    validator = rules_only(
        rules=[
            {"name": "gated", "expr": "False", "when": "kind == 'a'"},
            {"name": "broken", "expr": "False", "when": "undefined_name > 1"},
        ]
    )
    skipped = validator.validate_answer('{"kind": "b"}', {})
    assert skipped.ok
    assert [(w.rule, w.level, w.stage) for w in skipped.warnings] == [
        ("broken", "warning", "rules")
    ]
    assert "undefined_name" in skipped.warnings[0].message
    applied = validator.validate_answer('{"kind": "a"}', {})
    assert [v.rule for v in applied.violations] == ["gated"]


def test_warnings_are_kept_and_do_not_fail() -> None:
    validator = rules_only(
        rules=[
            {"name": "soft", "expr": "n < 5", "level": "warning", "error": "n is {n}"},
            {"name": "hard", "expr": "n < 100"},
        ]
    )
    outcome = validator.validate_answer('{"n": 7}', {})
    assert outcome.ok and outcome.stage is None and outcome.violations == ()
    assert outcome.warnings == (Violation("rules", "soft", "", "n is 7", "warning"),)
    assert outcome.record == {"n": 7}
    failing = validator.validate_answer('{"n": 700}', {})
    assert failing.stage == "rules"
    assert [w.rule for w in failing.warnings] == ["soft"]
    assert [v.rule for v in failing.violations] == ["hard"]


def test_error_interpolation_of_fields_and_computed() -> None:
    validator = rules_only(
        rules=[
            {
                "expr": "len(cards) + bonus >= target and ok",
                "error": "got {_computed} from {cards!r}, needs {target:.1f}; {nope} {x.__class__}",
            },
            {"expr": "total == 21", "error": "total {_computed}, {unit_id}, {{literal}}"},
            {"expr": "not ok", "error": "{_computed} {ok}"},
        ]
    )
    outcome = validator.validate_answer(
        '{"cards": ["a", "b"], "bonus": 1, "ok": true, "total": 20}', {"target": 5, "unit_id": "u7"}
    )
    messages = [v.message for v in outcome.violations]
    assert messages == [
        "got 3 from ['a', 'b'], needs 5.0; {nope} {x.__class__}",
        "total 20, u7, {literal}",
        "{_computed} True",
    ]


@pytest.mark.parametrize(
    "template",
    [
        "{x.__class__}",
        "{x.__class__.__mro__}",
        "{x[0]}",
        "{x.__init__.__globals__}",
        "{0}",
        "{}",
        "{__builtins__}",
        "{x:{x}}",
    ],
)
def test_error_templates_never_reach_attributes(template: str) -> None:
    validator = rules_only(rules=[{"expr": "False", "error": template}])
    message = validator.validate_answer('{"x": "abc"}', {}).violations[0].message
    assert message == template


def test_malformed_error_template_is_shown_as_written() -> None:
    validator = rules_only(rules=[{"expr": "False", "error": "broken { brace {x"}])
    assert validator.validate_answer('{"x": 1}', {}).violations[0].message == "broken { brace {x"


def test_format_spec_that_does_not_fit_falls_back_to_str() -> None:
    validator = rules_only(rules=[{"expr": "False", "error": "{x:.2f}"}])
    assert validator.validate_answer('{"x": "abc"}', {}).violations[0].message == "abc"


def test_rule_compile_errors_raise_at_construction() -> None:
    with pytest.raises(ExpressionError):
        rules_only(rules=[{"expr": "a >"}])
    with pytest.raises(UnsafeExpressionError):
        rules_only(rules=[{"expr": "__import__('os')"}])
    with pytest.raises(ExpressionError):
        rules_only(rules=[{"expr": "True", "when": "(("}])


def test_rules_see_safe_builtins() -> None:
    validator = rules_only(
        rules=[{"expr": "sum(x) == 6 and max(x) == 3 and sorted(x)[0] == 1 and abs(-1) == 1"}]
    )
    assert validator.validate_answer('{"x": [3, 1, 2]}', {}).ok


def test_rules_do_not_modify_the_record() -> None:
    validator = rules_only(rules=[{"expr": "len(x) == 0"}])
    outcome = validator.validate_answer('{"x": []}', {"u": 1})
    assert outcome.ok and outcome.record == {"u": 1, "x": []}


# --- expression steps -------------------------------------------------------------------------


def test_validate_record_for_expression_step_output() -> None:
    schema = {"type": "object", "properties": {"total": {"type": "integer"}}}
    validator = AnswerValidator(
        schema, spec(required=["total"], rules=[{"expr": "total <= limit", "error": "{total}"}])
    )
    outcome = validator.validate_record({"total": 12.0}, {"limit": 21})
    assert outcome.ok and outcome.output == {"total": 12} and not outcome.repaired
    assert outcome.record == {"limit": 21, "total": 12}
    bust = validator.validate_record({"total": 25}, {"limit": 21})
    assert bust.stage == "rules" and bust.violations[0].message == "25"
    schema_fail = validator.validate_record({"total": "lots"}, {"limit": 21})
    assert schema_fail.stage == "schema"


def test_validate_record_without_schema_accepts_mappings_and_tuples() -> None:
    from types import MappingProxyType

    validator = rules_only(types={"hand": "array"}, rules=[{"expr": "len(hand) == 2"}])
    outcome = validator.validate_record(MappingProxyType({"hand": (1, 2)}), {})
    assert outcome.ok and outcome.output == {"hand": (1, 2)}


def test_validate_record_coerces_tuples_for_array_schema() -> None:
    schema = {"type": "object", "properties": {"hand": {"type": "array"}}}
    outcome = AnswerValidator(schema, None).validate_record({"hand": (1, 2)}, {})
    assert outcome.ok and outcome.output == {"hand": [1, 2]}


def test_violation_and_outcome_shapes() -> None:
    violation = Violation("schema", "schema_type", "a.b", "bad")
    assert violation.to_dict() == {
        "stage": "schema",
        "rule": "schema_type",
        "path": "a.b",
        "message": "bad",
        "level": "error",
    }
    warning_only = Outcome(True, {}, {}, (Violation("rules", "r", "", "m", "warning"),), ())
    assert warning_only.stage is None
    with pytest.raises(AttributeError):
        violation.rule = "x"  # type: ignore[misc]


def test_long_schema_messages_are_clipped() -> None:
    validator = AnswerValidator({"type": "object", "properties": {"a": {"type": "string"}}}, None)
    outcome = validator.validate_answer(json.dumps({"a": list(range(5000))}), {})
    assert outcome.stage == "schema" and len(outcome.violations[0].message) <= 500
