"""``fastjson.loads`` gives what ``json.loads`` gives, value for value and error for error,
including where orjson alone would not (integers beyond 64 bits, NaN, lone surrogates)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octopipe import fastjson


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 is not 1.0, NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


EDGES = [
    "12345678901234567890",  # beyond 64 bits: orjson alone returns a float
    "-9223372036854775809",
    '{"n": 18446744073709551616, "m": [99999999999999999999]}',
    "9223372036854775807",
    "-9223372036854775808",
    "1234567890123456789",
    "123456789012345678",
    "0.12345678901234567890123",  # 19 digits in a row, a float: read by json, same value
    '"id 12345678901234567890"',
    "NaN",
    "[Infinity, -Infinity]",
    "1e400",
    '"\\ud800"',
    '"\\ud83d\\ude00"',
    '{"a": 1, "a": 2}',
    '{"\\u0000": -0.0}',
    " \n{}\t",
    '"\u2028é"',
]
BAD = ['{"a":', '{"a":1} x', "", "  ", "{'a': 1}", "[1,]", '"\x01"', "\ufeff{}"]


@pytest.mark.parametrize("text", EDGES)
@pytest.mark.parametrize("kind", [str, bytes])
def test_reads_what_json_loads_reads_where_orjson_alone_would_differ(text: str, kind: type) -> None:
    raw = text if kind is str else text.encode("utf-8", "surrogatepass")
    assert _same(fastjson.loads(raw), json.loads(raw))


def test_an_integer_beyond_64_bits_stays_an_exact_integer() -> None:
    value = fastjson.loads(b'{"custom_id": "x", "n": 123456789012345678901234567890}')
    assert value["n"] == 123456789012345678901234567890
    assert type(value["n"]) is int


@pytest.mark.parametrize("text", BAD)
def test_refuses_what_json_loads_refuses_with_its_message(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        fastjson.loads(text)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize(
    ("value", "error"),
    [(None, TypeError), (5, TypeError), (b"\xff{}", UnicodeDecodeError), ("\ud800", None)],
)
def test_a_value_json_loads_cannot_read_fails_as_it_does(value: Any, error: type | None) -> None:
    if error is None:  # a str with a lone surrogate: json reads it; orjson refuses it
        with pytest.raises(json.JSONDecodeError) as expected:
            json.loads(value)
        with pytest.raises(json.JSONDecodeError) as got:
            fastjson.loads(value)
        assert str(got.value) == str(expected.value)
        return
    with pytest.raises(error) as expected:
        json.loads(value)
    with pytest.raises(error) as got:
        fastjson.loads(value)
    assert str(got.value) == str(expected.value)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES, st.booleans(), st.booleans())
def test_any_text_json_writes_is_read_the_same(
    value: Any, ascii_only: bool, as_bytes: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    raw: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text
    try:
        expected = json.loads(raw)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            fastjson.loads(raw)
        return
    assert _same(fastjson.loads(raw), expected)


DUMPED = [
    {"model": "m", "messages": [{"role": "user", "content": 'é \u2028 "q" \\ \n'}], "t": 0.0},
    {7: "int key", 2.5: "float key", True: "bool key", None: "null key"},
    [float("nan"), float("inf"), -0.0, 10**30, 1e16],
    "a plain string é",
    (1, 2),
    [],
    None,
]


@pytest.mark.parametrize("value", DUMPED)
def test_dumps_writes_what_json_dumps_writes(value: Any) -> None:
    assert fastjson.dumps(value) == json.dumps(value, ensure_ascii=False)


def _cycle() -> list[Any]:
    cycle: list[Any] = []
    cycle.append(cycle)
    return cycle


@pytest.mark.parametrize("value", [{"x": {1, 2}}, {(1, 2): 3}, _cycle(), {"a": _cycle()}], ids=str)
def test_dumps_refuses_what_json_dumps_refuses_with_its_message(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as expected:
        json.dumps(value, ensure_ascii=False)
    with pytest.raises(type(expected.value)) as got:
        fastjson.dumps(value)
    assert str(got.value) == str(expected.value)
    assert fastjson.dumps({"after": "an error"}) == '{"after": "an error"}'  # nothing left over


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_any_value_is_written_as_json_dumps_writes_it(value: Any) -> None:
    assert fastjson.dumps(value) == json.dumps(value, ensure_ascii=False)
