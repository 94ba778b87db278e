"""Every path that builds text from pipeline content is bounded: prompt templates, rule error
messages; and a failed answer's message names every schema violation with its JSON path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from octopipe.core.budget import Budget, Limits
from octopipe.core.config_models import RuleSpec, ValidationSpec
from octopipe.core.prompts import PromptRenderer
from octopipe.core.steps import outcome_failure
from octopipe.core.validation import AnswerValidator
from octopipe.errors import RenderError

FIELDS = {"name": "bob", "cards": [1, 2, 3], "items": ["a", "b"], "big": "x" * 1000}

HUGE_TEMPLATES = {
    "format_method": ('{{ "{0:>1000000000}".format(1) }}', "format spec '>1000000000'"),
    "format_map": ('{{ "{a:.1000000000f}".format_map({"a": 1.5}) }}', "format spec"),
    "percent": ('{{ "%1000000000d" % 1 }}', "% format asks for 1000000000"),
    "percent_star": ('{{ "%*d" % (1000000000, 1) }}', "'*' widths"),
    "format_filter": ('{{ "%1000000000d"|format(1) }}', "% format asks for 1000000000"),
    "center_filter": ('{{ "x"|center(10**9) }}', "|center(1,000,000,000)"),
    "indent_filter": ('{{ ("a\n" * 100000)|indent(1000) }}', "|indent(1000)"),
    "ljust_method": ('{{ "x".ljust(10**9) }}', "str.ljust(1,000,000,000)"),
    "zfill_method": ('{{ "7".zfill(10**9) }}', "str.zfill"),
    "expandtabs": ('{{ ("\t" * 100000).expandtabs(100000) }}', "str.expandtabs()"),
    "join_method": ('{{ ",".join([big * 100] * 1000) }}', "10,000,000"),
    "join_filter": ("{{ ([big * 100] * 1000)|join(',') }}", "|join"),
    "replace_filter": ('{{ (big * 20)|replace("x", big) }}', "|replace"),
    "repetition": ('{{ "x" * 10**9 }}', "str * 1000000000"),
    "concatenation": ("{{ big ~ big ~ big }}{% set s = big * 5000 %}{{ s ~ s ~ s }}", "~"),
    "plus": ("{% set s = big * 6000 %}{{ s + s }}", "str + str"),
    "lipsum": ("{{ lipsum(n=10**6) }}", "lipsum(n=1000000"),
    "batch": ("{{ cards|batch(10**9, 0)|list }}", "|batch"),
    "slice": ("{{ cards|slice(10**9)|list }}", "|slice"),
    "sum_lists": ("{{ ([[1] * 10**6] * 1000)|sum(start=[]) }}", "|sum of sequences"),
    "doubling_namespace": (
        '{% set ns = namespace(s="xx") %}{% for i in range(100) %}'
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "10,000,000",
    ),
    "shared_parts": (
        "{% set ns = namespace(a=[1]) %}{% for i in range(100) %}"
        "{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns.a }}",
        "more than 10,000,000 characters as text",
    ),
    "doubling_macro": (
        "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% else %}{{ s|length }}"
        '{% endif %}{% endmacro %}{{ f("ab", 60) }}',
        "10,000,000",
    ),
    "string_of_shared_parts": ("{{ ([[big] * 1000] * 1000)|string }}", "characters as text"),
    "long_output": ('{% for i in range(100000) %}{{ "y" * 1000 }}{% endfor %}', "prompt would"),
    "nested_loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "took more than 20,000,000 steps",
    ),
}


@pytest.mark.parametrize("case", sorted(HUGE_TEMPLATES))
def test_a_template_that_would_build_too_much_fails_to_render_fast(
    tmp_path: Path, case: str
) -> None:
    source, expected = HUGE_TEMPLATES[case]
    (tmp_path / "t.jinja2").write_text(source)
    started = time.perf_counter()
    with pytest.raises(RenderError) as caught:
        renderer = PromptRenderer(tmp_path, "t.jinja2", config={}, global_context={})
        renderer.render(FIELDS, Budget(Limits(max_seconds=30)))
    assert time.perf_counter() - started < 30.0
    assert caught.value.template == "t.jinja2"
    assert expected in caught.value.message, caught.value.message


def test_ordinary_templates_render_as_before(tmp_path: Path) -> None:
    (tmp_path / "t.jinja2").write_text(
        "Hello {{ name|upper }} {% for c in cards %}{{ c }}{{ ',' if not loop.last }}"
        "{% endfor %} {{ '%05.1f'|format(3.14159) }} {{ '{:>5}'.format(7) }} "
        "{{ items|join(', ') }} {{ name ~ '-' ~ cards|length }} {{ '%d-%s' % (1, 'z') }} "
        "{{ cards|sum }} {{ 'ab' + 'cd' }} {{ 'x'|center(5) }}|{{ '-' * 3 }} {% set ns = namespace(n=0) %}{% for c in cards %}"
        "{% set ns.n = ns.n + c %}{% endfor %}{{ ns.n }}\n"
    )
    renderer = PromptRenderer(tmp_path, "t.jinja2", config={}, global_context={})
    assert renderer.render(FIELDS) == (
        "Hello BOB 1,2,3 003.1     7 a, b bob-3 1-z 6 abcd   x  |--- 6\n"
    )


# --- rule messages --------------------------------------------------------------------------


def rule_validator(error: str) -> AnswerValidator:
    spec = ValidationSpec(rules=[RuleSpec(name="r", expr="answer == 'yes'", error=error)])
    return AnswerValidator(None, spec)


@pytest.mark.parametrize(
    ("error", "answer", "expected"),
    [
        ("bad: {answer:>10000000}", "no", "bad: no"),
        ("bad: {answer:.10000000f}", 1.5, "bad: 1.5"),
        ("bad: {answer:>12}|", "no", "bad:           no|"),
        ("bad: {answer!r}", "no", "bad: 'no'"),
        ("bad: {answer:.2f}", 2.0, "bad: 2.00"),
    ],
)
def test_rule_messages_apply_only_specs_that_fit_a_message(
    error: str, answer: object, expected: str
) -> None:
    outcome = rule_validator(error).validate_answer(json.dumps({"answer": answer}), {})
    assert outcome.stage == "rules"
    assert outcome.violations[0].message == expected


def test_a_rule_message_quoting_a_huge_answer_is_clipped() -> None:
    validator = rule_validator("bad: {answer} and {answer!r} and {more}")
    answer = json.dumps({"answer": "x" * 5_000_000, "more": list(range(100_000))})
    started = time.perf_counter()
    message = validator.validate_answer(answer, {}).violations[0].message
    assert time.perf_counter() - started < 2.0
    assert len(message) <= 500
    assert message.startswith("bad: xxxx") and message.endswith("…")


def test_a_rule_message_abbreviates_structures() -> None:
    validator = rule_validator("{more} / {answer!r}")
    outcome = validator.validate_answer(json.dumps({"answer": 1, "more": list(range(50))}), {})
    assert outcome.violations[0].message == "[0, 1, 2, 3, 4, 5, ...] / 1"


# --- schema errors --------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"score": {"type": "integer", "maximum": 10}},
                "required": ["score"],
            },
        },
    },
    "required": ["verdict", "items"],
}


def test_every_schema_violation_is_reported_with_its_json_path() -> None:
    answer = {"items": [{"score": 1}, {"score": 2}, {"score": 11}, {"note": "x"}]}
    outcome = AnswerValidator(SCHEMA, None, coerce=False).validate_answer(json.dumps(answer), {})
    failure = outcome_failure(outcome)
    assert failure.stage == "schema"
    assert [e["message"] for e in failure.errors] == [
        "answer: 'verdict' is a required property",
        "answer.items[2].score: 11 is greater than the maximum of 10",
        "answer.items[3]: 'score' is a required property",
    ]
    assert [e["path"] for e in failure.errors] == ["", "items[2].score", "items[3]"]
    assert failure.message == "; ".join(e["message"] for e in failure.errors)


def test_a_failure_message_lists_ten_violations_then_counts_the_rest() -> None:
    answer = {"verdict": "v", "items": [{"score": 20 + i} for i in range(25)]}
    outcome = AnswerValidator(SCHEMA, None).validate_answer(json.dumps(answer), {})
    failure = outcome_failure(outcome)
    assert len(failure.errors) == 25
    assert failure.message.count("is greater than the maximum of 10") == 10
    assert failure.message.endswith("; and 15 more")
