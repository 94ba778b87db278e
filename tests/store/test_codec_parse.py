"""The ledger's JSON reader gives what ``json.loads`` gives: the same value or the same error;
its writer writes what ``json.dumps`` (compact, non-ASCII kept, NaN refused) writes."""

from __future__ import annotations

import json

import pytest

from octopipe.errors import CorruptValue, UnstorableValue
from octopipe.store.codec import dumps, loads, parse

TEXTS = ['{"a":1,"b":[1,2.5,"é"]}', ' {"a":1}', '{"a":1}\n', '"x"', "[]", "null", "12"]
BAD = ['{"a":', '{"a":1} x', "", "  ", "{'a': 1}", "[1,]"]


@pytest.mark.parametrize("text", TEXTS)
def test_parse_reads_what_json_loads_reads(text: str) -> None:
    assert parse(text) == json.loads(text)


@pytest.mark.parametrize("text", BAD)
def test_parse_refuses_what_json_loads_refuses_with_its_message(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        parse(text)
    assert str(got.value) == str(expected.value)


def test_parse_of_a_value_that_is_not_text_fails_as_json_loads_does() -> None:
    with pytest.raises(TypeError, match="must be str"):
        parse(5)


def test_loads_names_the_damaged_value() -> None:
    with pytest.raises(CorruptValue, match="the output of unit 'a' is corrupt"):
        loads('{"x":', what="the output of unit 'a'")


def test_dumps_writes_compact_strict_json_as_before() -> None:
    value = {"a": [1, 2.5, "é\u2028"], "b": None, "c": {"d": True}}
    assert dumps(value, what="x") == json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


VALUES = [
    {"a": 1, "b": [1, 2.5, None, True, "é\u2028"], "c": {"d": -0.0, "e": 1e16}},
    {7: "int key", 2.5: "float key", True: "bool key", None: "null key"},
    (1, 2),
    'a "quoted" \\ text\n',
    10**30,
    [],
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_writes_what_json_dumps_writes(value: object) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert dumps(value, what="v") == expected


def _cycle() -> list[object]:
    cycle: list[object] = []
    cycle.append(cycle)
    return cycle


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"x": float("nan")}, "Out of range float values"),
        ({"x": {1, 2}}, "Object of type set"),
        ({(1, 2): 3}, "keys must be str"),
        (_cycle(), "recursion"),
    ],
)
def test_dumps_refuses_what_strict_json_cannot_hold_naming_it(value: object, reason: str) -> None:
    with pytest.raises(
        UnstorableValue, match=f"output of unit 7 cannot be stored as JSON: .*{reason}"
    ):
        dumps(value, what="output of unit 7")
