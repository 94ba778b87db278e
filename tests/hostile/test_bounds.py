"""Hostile pipelines that try to hang or exhaust octopipe with expressions, templates and rule
messages: every command ends in bounded time with a clear message, the bad unit fails alone,
and nothing leaks."""

from __future__ import annotations

import json

import pytest

from support.hostile import Sandbox

BOUND_S = 45  # each command must end well within the harness's own limit


def status_of(sandbox: Sandbox, run: str) -> dict:
    shown = sandbox.octopipe("status", run, "--json", timeout=BOUND_S)
    assert shown.code == 0, shown
    return json.loads(shown.out)


def failures_of(sandbox: Sandbox, run: str, step: str) -> list[dict]:
    path = sandbox.runs / run / "outputs" / f"{step}_failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "expression",
    [
        "sum(range(10**12))",
        "len('x' * value * 10**10)",
        "len(str([['x' * 10**6] * 1000] * 1000))",
        "(lambda f: f(f, 60))(lambda f, n: 1 if n < 1 else f(f, n - 1) + f(f, n - 1))",
    ],
)
def test_a_huge_expression_fails_its_unit_alone_in_validate_and_run(
    sandbox: Sandbox, expression: str
) -> None:
    sandbox.edit_config(
        'doubled: "value * 2"', f'doubled: "({expression}) if value == 2 else value * 2"'
    )
    validated = sandbox.octopipe("validate", sandbox.pipeline, timeout=BOUND_S)
    # the trial unit is item a (value 1): validate passes, quickly
    assert validated.code == 0, validated
    ran = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "h", timeout=BOUND_S
    )
    assert ran.code in (0, 1), ran
    view = status_of(sandbox, "h")
    assert view["steps"][0]["valid"] == 2 and view["steps"][0]["failed"] == 1, view["steps"]
    assert view["steps"][1]["valid"] == 2, view["steps"]
    [failure] = failures_of(sandbox, "h", "score")
    assert failure["unit_id"] == "b"
    text = json.dumps(failure)
    assert '"stage": "expression"' in text and "ResourceLimitExceeded" in text, text
    assert "doubled" in text
    sandbox.assert_contained(validated, ran)


def test_validate_stops_a_huge_rule_on_the_trial_unit(sandbox: Sandbox) -> None:
    sandbox.edit_config(
        "validation:\n",
        "validation:\n  score:\n    rules:\n      - name: spin\n"
        '        expr: "sum(range(10**12)) > 0"\n',
    )
    validated = sandbox.octopipe("validate", sandbox.pipeline, timeout=BOUND_S)
    assert validated.code == 2, validated
    assert "[validation.score]" in validated.text
    assert "rule 'spin' failed (ResourceLimitExceeded: range(1000000000000)" in validated.text
    sandbox.assert_contained(validated)


def test_validate_reports_a_huge_rule_on_a_mock_answer_in_bounded_time(sandbox: Sandbox) -> None:
    sandbox.edit_config(
        "    required: [verdict]\n",
        "    required: [verdict]\n    rules:\n      - name: spin\n"
        '        expr: "len(verdict * 10**10) > 0"\n',
    )
    validated = sandbox.octopipe("validate", sandbox.pipeline, timeout=BOUND_S)
    assert validated.code == 0, validated  # about a mock answer: a warning, not an error
    assert "[validation.judge]: warning: trial run" in validated.text
    assert "ResourceLimitExceeded: str * 10,000,000,000" in validated.text
    sandbox.assert_contained(validated)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{ "{0:>1000000000}".format(1) }}', "format spec '>1000000000'"),
        ('{{ "%1000000000d" % 1 }}', "% format asks for 1000000000"),
        ('{{ "%1000000000d"|format(1) }}', "% format asks for 1000000000"),
        ("{{ 'x'|center(10**9) }}", "|center(1,000,000,000)"),
        ("{{ lipsum(n=10**7) }}", "lipsum(n=10000000"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "steps",
        ),
    ],
)
def test_a_template_that_builds_too_much_fails_to_render_alone(
    sandbox: Sandbox, template: str, expected: str
) -> None:
    sandbox.write(
        "templates/judge.jinja2",
        "Judge {{ value }}.{% if value == 3 %}" + template + "{% endif %}\n",
    )
    validated = sandbox.octopipe("validate", sandbox.pipeline, timeout=BOUND_S)
    assert validated.code == 0, validated  # the trial unit renders fine
    tried = sandbox.octopipe("try", sandbox.pipeline, "--unit", "c", timeout=BOUND_S)
    assert tried.code == 1, tried
    assert "FAILED at render" in tried.out and expected in tried.out, tried
    ran = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "t", timeout=BOUND_S
    )
    view = status_of(sandbox, "t")
    assert view["steps"][1]["valid"] == 2 and view["steps"][1]["failed"] == 1, view["steps"]
    [failure] = failures_of(sandbox, "t", "judge")
    assert failure["unit_id"] == "c" and '"stage": "render"' in json.dumps(failure)
    assert expected in json.dumps(failure)
    sandbox.assert_contained(validated, tried, ran)


def test_a_rule_message_cannot_blow_up_the_ledger(sandbox: Sandbox) -> None:
    sandbox.edit_config(
        "    required: [verdict]\n",
        "    required: [verdict]\n    rules:\n      - name: never\n"
        "        expr: \"verdict == 'no such verdict'\"\n"
        '        error: "{verdict:>10000000}{verdict:.10000000}{doubled:>10000000}"\n',
    )
    ran = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "m", timeout=BOUND_S
    )
    view = status_of(sandbox, "m")
    assert view["steps"][1]["failed"] == 3, view["steps"]
    run_dir = sandbox.runs / "m"
    stored = sum(p.stat().st_size for p in run_dir.iterdir() if p.name.startswith("ledger"))
    assert stored < 5_000_000, stored
    for failure in failures_of(sandbox, "m", "judge"):
        assert all(len(e.get("message", "")) <= 500 for e in failure["errors"]), failure
    sandbox.assert_contained(ran)


def test_try_refuses_a_binary_response_file_clearly(sandbox: Sandbox) -> None:
    answer = sandbox.outside.parent / "answer.bin"
    answer.write_bytes(b'{"verdict": "\xff\xfe\x00ok"}')
    tried = sandbox.octopipe(
        "try", sandbox.pipeline, "--unit", "a", "--response", answer, timeout=BOUND_S
    )
    assert tried.code == 2, tried
    assert "not UTF-8 text (byte 0xff at offset 13)" in tried.err, tried
    assert "Traceback" not in tried.text
    sandbox.assert_contained(tried)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{(1, 2): value}", "field doubled has the key (1, 2), which is not a string"),
        ("float('nan')", "field doubled is nan, which JSON cannot store"),
        ("10 ** 30", "field doubled is an integer of 100 bits"),
        ("{value, 1}", "field doubled is a set, which cannot be stored as JSON"),
        ("(lambda x: x)", "field doubled is a function, which cannot be stored as JSON"),
        ("[range(3)]", "field doubled[0] is a range, which cannot be stored as JSON"),
    ],
)
def test_try_and_run_reject_the_same_unstorable_values(
    sandbox: Sandbox, expression: str, expected: str
) -> None:
    sandbox.edit_config('doubled: "value * 2"', f'doubled: "{expression} if value == 2 else 0"')
    tried = sandbox.octopipe("try", sandbox.pipeline, "--unit", "b", timeout=BOUND_S)
    assert tried.code == 1, tried
    assert "FAILED at expression" in tried.out and expected in tried.out, tried
    ran = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "s", timeout=BOUND_S
    )
    [failure] = failures_of(sandbox, "s", "score")
    assert failure["unit_id"] == "b" and expected in json.dumps(failure), failure
    assert status_of(sandbox, "s")["steps"][0]["valid"] == 2
    sandbox.assert_contained(tried, ran)
