"""Schema patterns are matched with a time bound, and otherwise exactly as jsonschema does."""

from __future__ import annotations

import time
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from octopipe.core.coercion import compile_schema
from octopipe.core.patterns import BoundedValidator, PatternTooSlow, search

SLOW = "^(a|aa)+$"
HANGS_ON = "a" * 40 + "!"

SCHEMAS: list[tuple[dict[str, Any], Any]] = [
    ({"type": "string", "pattern": "^x+$"}, "xxx"),
    ({"type": "string", "pattern": "^x+$"}, "xy"),
    ({"pattern": "[0-9]"}, 12),  # not a string: pattern does not apply
    ({"patternProperties": {"^n_": {"type": "integer"}}}, {"n_a": 1, "n_b": "two"}),
    (
        {"properties": {"id": {}}, "patternProperties": {"^n_": {}}, "additionalProperties": False},
        {"id": 1, "n_a": 1, "zz": 2, "yy": 3},
    ),
    (
        {"patternProperties": {"^n_": {}}, "additionalProperties": {"type": "string"}},
        {"n_a": 1, "other": 2},
    ),
    ({"properties": {"id": {}}, "additionalProperties": False}, {"id": 1, "extra": 2}),
]


@pytest.mark.parametrize(("schema", "value"), SCHEMAS)
def test_a_match_that_finishes_gives_jsonschemas_own_errors(schema: dict, value: Any) -> None:
    ours = sorted((e.message, list(e.path)) for e in BoundedValidator(schema).iter_errors(value))
    theirs = sorted(
        (e.message, list(e.path)) for e in Draft202012Validator(schema).iter_errors(value)
    )
    assert ours == theirs


def test_a_runaway_pattern_stops_and_counts_as_not_matching() -> None:
    started = time.monotonic()
    with pytest.raises(PatternTooSlow, match=r"within 0\.1 s"):
        search(SLOW, HANGS_ON)
    assert time.monotonic() - started < 2
    (error,) = BoundedValidator({"pattern": SLOW}).iter_errors(HANGS_ON)
    assert error.message == (
        f"'{HANGS_ON}' could not be matched against '{SLOW}' within 0.1 s "
        "(the pattern backtracks without bound), so it counts as not matching"
    )


def test_a_runaway_property_pattern_is_reported_and_the_key_is_an_extra() -> None:
    schema = {"patternProperties": {SLOW: {"type": "integer"}}, "additionalProperties": False}
    messages = sorted(e.message for e in BoundedValidator(schema).iter_errors({HANGS_ON: "x"}))
    assert messages == [
        f"'{HANGS_ON}' does not match any of the regexes: '{SLOW}'",
        f"property name '{HANGS_ON}' could not be matched against '{SLOW}' within 0.1 s "
        "(the pattern backtracks without bound), so it counts as not matching",
    ]


def test_long_values_are_cut_in_the_message() -> None:
    with pytest.raises(PatternTooSlow) as slow:
        search(SLOW, "a" * 5000 + "!")
    assert str(slow.value).startswith(f"'{'a' * 60}…' could not be matched")


def test_the_compiled_schema_quick_check_and_coercion_are_bounded_too() -> None:
    compiled = compile_schema(
        {"type": "object", "properties": {"v": {"type": "string", "pattern": SLOW}}}
    )
    started = time.monotonic()
    assert compiled.quick_check({"v": HANGS_ON}) is False  # defers to the full validator
    assert not compiled.validator.is_valid({"v": HANGS_ON})
    assert compiled.quick_check({"v": "aaa"}) is True
    keyed = compile_schema({"type": "object", "patternProperties": {SLOW: {"type": "integer"}}})
    assert keyed.coerce({HANGS_ON: "7"}) == {HANGS_ON: "7"}  # no match in time: left as is
    assert keyed.coerce({"aa": "7"}) == {"aa": 7}
    assert time.monotonic() - started < 5
