"""Properties of answer parsing and schema coercion (hypothesis)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from octopipe.core.coercion import compile_schema
from octopipe.core.validation import parse_answer

SETTINGS = settings(max_examples=150, deadline=None)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


def same_json(a: Any, b: Any) -> bool:
    """Equality that tells ``true`` from ``1`` and ``1`` from ``1.0`` (Python's == does not)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def not_double_wrapped(obj: dict[str, Any]) -> bool:
    """``{"response": "{...}"}`` is unwrapped on purpose; keep such objects out."""
    value = obj.get("response")
    return not (len(obj) == 1 and isinstance(value, str) and value.strip()[:1] in ("{", "`"))


# --- parsing ----------------------------------------------------------------------------------


@SETTINGS
@given(json_objects)
def test_plain_json_round_trips(obj: dict[str, Any]) -> None:
    assume(not_double_wrapped(obj))
    parsed, repaired = parse_answer(json.dumps(obj))
    assert same_json(parsed, obj)
    assert not repaired


WRAPPERS = [
    lambda text: f"```json\n{text}\n```",
    lambda text: f"```\n{text}\n```",
    lambda text: f"Here is the answer you asked for:\n\n{text}\n\nLet me know if you need more.",
    lambda text: f"Sure!\n```json\n{text}\n```\nDone.",
    lambda text: f"   \n\t{text}\n\n",
]


@SETTINGS
@given(json_objects, st.sampled_from(WRAPPERS), st.sampled_from([None, 2, 4]))
def test_wrapped_json_still_parses(obj: dict[str, Any], wrap: Any, indent: int | None) -> None:
    assume(not_double_wrapped(obj))
    text = json.dumps(obj, indent=indent)
    assume("```" not in text)
    parsed, _ = parse_answer(wrap(text))
    assert same_json(parsed, obj)


@SETTINGS
@given(json_objects.filter(bool), st.sampled_from([None, 2]))
def test_trailing_comma_is_repaired(obj: dict[str, Any], indent: int | None) -> None:
    assume(not_double_wrapped(obj))
    text = json.dumps(obj, indent=indent).rstrip()
    assert text.endswith("}")
    parsed, repaired = parse_answer(text[:-1].rstrip() + ",\n}")
    assert same_json(parsed, obj)
    assert repaired


# --- coercion ---------------------------------------------------------------------------------

INTEGER = compile_schema({"type": "integer"})
NUMBER = compile_schema({"type": "number"})


@SETTINGS
@given(st.integers(min_value=-(10**60), max_value=10**60))
def test_integer_strings_become_integers(n: int) -> None:
    assert same_json(INTEGER.coerce(str(n)), n)
    assert same_json(INTEGER.coerce(f"  {n} "), n)
    assert same_json(NUMBER.coerce(str(n)), n)


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_strings_become_numbers(f: float) -> None:
    coerced = NUMBER.coerce(repr(f))
    assert isinstance(coerced, float) and coerced == f
    assert math.copysign(1, coerced) == math.copysign(1, f)


type_names = st.sampled_from(["string", "integer", "number", "boolean", "null", "array", "object"])
leaf_schemas = st.one_of(
    type_names.map(lambda t: {"type": t}),
    st.lists(type_names, min_size=1, max_size=3, unique=True).map(lambda ts: {"type": ts}),
    st.just({}),
    st.just({"enum": ["Alpha", "beta", 3, True, None]}),
    st.just({"type": "string", "enum": ["Low", "High"]}),
    st.integers(-5, 5).map(lambda k: {"type": "integer", "minimum": k}),
    st.integers(0, 3).map(lambda k: {"type": "string", "minLength": k}),
)
subschemas = st.recursive(
    leaf_schemas,
    lambda children: st.one_of(
        children.map(lambda s: {"type": "array", "items": s}),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3).map(
            lambda props: {"type": "object", "properties": props}
        ),
        st.lists(children, min_size=1, max_size=3).map(lambda subs: {"anyOf": subs}),
    ),
    max_leaves=6,
)
schemas = st.one_of(
    subschemas,
    subschemas.map(lambda s: {"$defs": {"d": s}, "$ref": "#/$defs/d"}),
    st.tuples(subschemas, subschemas).map(
        lambda pair: {
            "$defs": {"d": pair[0]},
            "type": "object",
            "properties": {
                "a": {"$ref": "#/$defs/d"},
                "b": {"type": "array", "items": {"$ref": "#/$defs/d"}},
                "c": pair[1],
            },
        }
    ),
)
coercible_strings = st.sampled_from(
    [
        "7",
        " -2 ",
        "3.0",
        "2.5",
        "1e2",
        "true",
        " FALSE ",
        '[1, "2"]',
        "[",
        "x",
        " alpha ",
        "HIGH",
        "null",
    ]
)
values = st.recursive(
    scalars | coercible_strings,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(schemas, values)
def test_coercion_is_idempotent_and_keeps_valid_values(schema: dict[str, Any], value: Any) -> None:
    compiled = compile_schema(schema)
    snapshot = json.dumps(value, sort_keys=True)
    once = compiled.coerce(value)
    assert json.dumps(value, sort_keys=True) == snapshot  # the input is never modified
    assert same_json(compiled.coerce(once), once)
    if Draft202012Validator(schema).is_valid(value):
        assert same_json(once, value) or _only_whole_floats_became_ints(once, value)


@settings(max_examples=400, deadline=None)
@given(schemas, values)
def test_quick_check_matches_jsonschema(schema: dict[str, Any], value: Any) -> None:
    compiled = compile_schema(schema)
    assert compiled.checkable
    expected = Draft202012Validator(schema).is_valid(value)
    assert compiled.quick_check(value) == expected
    coerced = compiled.coerce(value)
    assert compiled.quick_check(coerced) == Draft202012Validator(schema).is_valid(coerced)


def _only_whole_floats_became_ints(new: Any, old: Any) -> bool:
    if isinstance(old, float) and type(new) is int:
        return old == new
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(
            same_json(new[k], old[k]) or _only_whole_floats_became_ints(new[k], old[k]) for k in old
        )
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return all(
            same_json(n, o) or _only_whole_floats_became_ints(n, o)
            for n, o in zip(new, old, strict=True)
        )
    return False
