"""The emulator's schema-shaped answers: valid, deterministic, honouring constraints."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopipe.core.schema_values import schema_value
from octopipe.emulator.answers import (
    EmulatorRequest,
    break_json,
    default_answer,
    make_answer,
)

NESTED: dict[str, Any] = {
    "$defs": {
        "person": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 5},
                "age": {"type": "integer", "minimum": 18, "exclusiveMaximum": 20},
                "email": {"type": "string", "format": "email"},
            },
            "required": ["name", "age"],
        }
    },
    "type": "object",
    "properties": {
        "people": {"type": "array", "items": {"$ref": "#/$defs/person"}, "minItems": 2},
        "mood": {"enum": ["calm", "angry"]},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "step": {"type": "number", "multipleOf": 0.25, "minimum": 1, "maximum": 2},
        "flag": {"type": ["boolean", "null"]},
        "kind": {"const": "fixed"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True},
        "either": {"anyOf": [{"type": "null"}, {"type": "integer", "maximum": -5}]},
        "both": {"allOf": [{"properties": {"x": {"type": "integer"}}, "required": ["x"]}]},
    },
    "required": ["people", "mood", "extra"],
    "additionalProperties": {"type": "integer", "minimum": 100},
}


def test_nested_schema_is_satisfied() -> None:
    value = schema_value(NESTED, "prompt")
    jsonschema.validate(value, NESTED)
    assert len(value["people"]) >= 2
    assert value["kind"] == "fixed"
    assert value["extra"] >= 100


def test_same_seed_same_value_and_seeds_vary() -> None:
    assert schema_value(NESTED, "a") == schema_value(NESTED, "a")
    assert len({repr(schema_value(NESTED, f"p{i}")) for i in range(10)}) > 1


@pytest.mark.parametrize(
    ("schema", "check"),
    [
        ({"type": "integer", "minimum": 5, "maximum": 5}, lambda v: v == 5),
        ({"type": "integer", "exclusiveMinimum": 9, "maximum": 10}, lambda v: v == 10),
        (
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.001},
            lambda v: 0 < v < 0.001,
        ),
        ({"type": "string", "minLength": 40}, lambda v: len(v) >= 40),
        ({"type": "string", "maxLength": 0}, lambda v: v == ""),
        ({"type": "array", "minItems": 4, "maxItems": 4}, lambda v: len(v) == 4),
        ({"type": "string", "format": "date"}, lambda v: len(v) == 10 and v[4] == "-"),
        ({"type": "object", "required": ["a"]}, lambda v: "a" in v),
        ({"type": "object", "minProperties": 2}, lambda v: len(v) >= 2),
    ],
)
def test_single_constraints(schema: dict[str, Any], check: Any) -> None:
    for seed in range(5):
        value = schema_value(schema, seed)
        jsonschema.validate(value, schema)
        assert check(value)


def test_gemini_openapi_schema_with_upper_case_types() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {"n": {"type": "INTEGER", "minimum": 3, "maximum": 4}},
        "required": ["n"],
    }
    assert schema_value(schema, "x")["n"] in (3, 4)


def test_recursive_schema_terminates() -> None:
    tree = {
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
        "required": ["children"],
    }
    jsonschema.validate(schema_value(tree, "deep"), tree)


def leaf_schemas() -> st.SearchStrategy[dict[str, Any]]:
    bounds = st.integers(-1000, 1000)
    integers = st.tuples(bounds, st.integers(0, 50)).map(
        lambda t: {"type": "integer", "minimum": t[0], "maximum": t[0] + t[1]}
    )
    numbers = st.tuples(st.floats(-1e6, 1e6), st.floats(0.01, 1e3)).map(
        lambda t: {"type": "number", "minimum": t[0], "maximum": t[0] + t[1]}
    )
    strings = st.tuples(st.integers(0, 30), st.integers(0, 30)).map(
        lambda t: {"type": "string", "minLength": t[0], "maxLength": t[0] + t[1]}
    )
    steps = st.tuples(
        st.floats(-1e4, 1e4), st.sampled_from([0.1, 0.25, 0.5, 0.01, 3, 7]), st.integers(1, 20)
    ).map(
        lambda t: {
            "type": "number",
            "multipleOf": t[1],
            "minimum": t[0],
            "maximum": t[0] + t[1] * t[2],
        }
    )
    enums = st.lists(st.text(max_size=5), min_size=1, max_size=4, unique=True).map(
        lambda values: {"enum": values}
    )
    simple = st.sampled_from([{"type": "boolean"}, {"type": "null"}, {"type": "string"}])
    return st.one_of(integers, numbers, steps, strings, enums, simple)


def composite(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    arrays = st.tuples(children, st.integers(0, 3), st.integers(0, 3)).map(
        lambda t: {"type": "array", "items": t[0], "minItems": t[1], "maxItems": t[1] + t[2]}
    )
    objects = st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=4).flatmap(
        lambda props: st.lists(st.sampled_from(sorted(props) or [""]), unique=True).map(
            lambda req: {
                "type": "object",
                "properties": props,
                "required": [r for r in req if r in props],
                "additionalProperties": False,
            }
        )
    )
    return st.one_of(arrays, objects)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=st.recursive(leaf_schemas(), composite, max_leaves=12), seed=st.text(max_size=20))
def test_generated_values_always_validate(schema: dict[str, Any], seed: str) -> None:
    jsonschema.validate(schema_value(schema, seed), schema)


def request(**fields: Any) -> EmulatorRequest:
    base: dict[str, Any] = {"vendor": "openai", "endpoint": "e", "model": "m", "prompt": "p"}
    return EmulatorRequest(**{**base, **fields})


def test_default_answer_without_schema_is_text() -> None:
    answer = default_answer(request(prompt="hello"))
    assert isinstance(answer, str) and answer == default_answer(request(prompt="hello"))


@given(st.text(max_size=60))
def test_broken_json_never_parses(text: str) -> None:
    import json

    with pytest.raises(ValueError):
        json.loads(break_json(text))


def test_make_answer_counts_tokens_and_caps_cached() -> None:
    answer = make_answer(
        request(prompt="x" * 10, system="y" * 6), lambda r: "z" * 9, cached_input_tokens=99
    )
    assert (answer.input_tokens, answer.output_tokens, answer.cached_input_tokens) == (4, 3, 4)
    assert answer.data is None and not answer.truncated
