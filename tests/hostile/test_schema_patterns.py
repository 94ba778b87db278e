"""A schema pattern that backtracks without bound cannot hang a run: the answer it would hang
on fails its schema check in bounded time, saying why."""

from __future__ import annotations

import json

from support.hostile import SCHEMA, Sandbox

SLOW = "^(a|aa)+$"  # exponential in Python's re on "aaaa…!"


def test_a_backtracking_pattern_fails_the_answer_in_bounded_time(sandbox: Sandbox) -> None:
    schema = json.loads(json.dumps(SCHEMA))
    schema["properties"]["verdict"]["pattern"] = SLOW
    schema["patternProperties"] = {"^(b|bb)+$": {"type": "integer"}}
    schema["additionalProperties"] = False
    sandbox.write("schemas/judge.json", json.dumps(schema))
    answer = sandbox.work / "answer.json"
    answer.write_text(json.dumps({"verdict": "a" * 40 + "!", "b" * 40 + "!": 1}))

    validated = sandbox.octopipe("validate", sandbox.pipeline)
    tried = sandbox.octopipe(
        "try", sandbox.pipeline, "--unit", "a", "--response", answer, timeout=60
    )

    assert validated.code == 0, validated
    assert tried.code == 1, tried
    assert tried.seconds < 30, tried
    assert (
        f"'{'a' * 40}!' could not be matched against '{SLOW}' within 0.1 s "
        "(the pattern backtracks without bound), so it counts as not matching"
    ) in tried.out, tried
    assert "property name" in tried.out and "'^(b|bb)+$'" in tried.out, tried
    sandbox.assert_contained(validated, tried)
