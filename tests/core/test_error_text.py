"""Error messages to group keys: what varies between units goes, what went wrong stays."""

from __future__ import annotations

import pytest

from octopipe.core.error_text import MAX_KEY, error_key, error_keys


@pytest.mark.parametrize(
    ("message", "key"),
    [
        ("score 3 is below 5", "score <n> is below <n>"),
        ("score -2.5e3 is below 0.75", "score <n> is below <n>"),
        (
            "Expecting value: line 1 column 17 (char 16)",
            "Expecting value: line <n> column <n> (char <n>)",
        ),
        ("'maybe' is not one of ['yes', 'no']", "'<s>' is not one of ['<s>', '<s>']"),
        ('value "x 1" is not an integer', "value '<s>' is not an integer"),
        ("can't parse `ab c` here", "can't parse '<s>' here"),
        ("request req_01HX9ZAB4 failed", "request <id> failed"),
        ("batch 6f1e2d3c4b5a failed", "batch <id> failed"),
        ("id 123e4567-e89b-12d3-a456-426614174000 gone", "id <id> gone"),
        ("timed out after 30.5s (limit 429ms)", "timed out after <n>s (limit <n>ms)"),
        ("openai: overloaded (HTTP 503)", "openai: overloaded (HTTP <n>)"),
        ("no route to 127.0.0.1:8080 (v1.2.3)", "no route to <n>:<n> (v1.2.3)"),
        ("gpt-4o-mini refused", "gpt-4o-mini refused"),  # a model name is not a number
        ("unit item003__rep0002 failed", "unit <id> failed"),
        ("too   many\n spaces", "too many spaces"),
    ],
)
def test_error_key(message: str, key: str) -> None:
    assert error_key(message) == key


def test_a_long_message_is_cut() -> None:
    key = error_key("word " * 200)
    assert len(key) == MAX_KEY and key.endswith("…")


def test_warnings_and_entries_without_a_message_do_not_count() -> None:
    errors = [
        {"stage": "rules", "message": "score 3 is below 5", "level": "error"},
        {"stage": "rules", "message": "tone 2 is off", "level": "warning"},
        {"field": "parts"},
        "not an object",
        {"message": 12},
    ]
    assert error_keys(errors) == ["score <n> is below <n>"]


def test_two_errors_with_one_key_count_once() -> None:
    errors = [{"message": "'a' is not of type 'integer'"}, {"message": "'b' is not of type 'x'"}]
    assert error_keys(errors) == ["'<s>' is not of type '<s>'"]


def test_the_engines_summary_of_a_local_failure_is_not_counted_again() -> None:
    errors = [
        {"variable": "t", "expression": "10 // n", "message": "division by zero"},
        {
            "message": "t = '10 // n': division by zero",
            "iterations": 1,
            "hit_max_iterations": False,
        },
    ]
    assert error_keys(errors) == ["division by zero"]
    unstorable = [
        {"message": "x is NaN"},
        {"message": "y is inf"},
        {"message": "x is NaN; y is inf"},
    ]
    assert error_keys(unstorable) == ["x is NaN", "y is inf"]


def test_the_summary_counts_when_nothing_else_has_a_message() -> None:
    errors = [{"field": "parts"}, {"message": "fan-out field 'parts' is missing, not a list"}]
    assert error_keys(errors) == ["fan-out field '<s>' is missing, not a list"]


def test_a_lone_message_is_never_taken_for_a_summary() -> None:
    assert error_keys([{"message": "boom 1"}]) == ["boom <n>"]


@pytest.mark.parametrize("errors", [None, {}, "text", 3, []])
def test_anything_but_a_list_of_errors_has_no_key(errors: object) -> None:
    assert error_keys(errors) == []
