"""Static checking: no false positives on valid pipelines, real problems found and placed."""

from __future__ import annotations

from pathlib import Path

import pytest

from octopipe.core.checker import CheckReport, check_pipeline
from octopipe.core.config import load_pipeline
from support.paths import EXAMPLE_NAMES, EXAMPLES, line_of


def check(folder: Path) -> CheckReport:
    return check_pipeline(load_pipeline(folder))


def rendered(report: CheckReport) -> list[str]:
    return [p.render() for p in report.problems]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples_have_zero_findings(name: str) -> None:
    report = check(EXAMPLES / name)
    assert report.problems == [], rendered(report)
    assert report.ok


def test_summary_counts_units_and_calls_per_step() -> None:
    report = check(EXAMPLES / "persona_panel")
    assert report.units == 4 * 3 * 3
    assert [(s.name, s.kind, s.calls) for s in report.steps] == [
        ("write", "llm", 36),
        ("judge", "llm", 36),
    ]


def test_summary_respects_max_units_and_repeat() -> None:
    report = check_pipeline(load_pipeline(EXAMPLES / "random_walk"), repeat=7, max_units=5)
    assert report.units == 5
    assert report.steps[1].calls == 5


def test_fields_from_earlier_llm_schema_are_known(example_copy) -> None:
    """The card game's check steps read fields the LLM step produces: not flagged."""
    report = check(EXAMPLES / "card_game")
    assert not any("final_total" in p.message for p in report.problems)


def test_undefined_name_in_expression_is_an_error_with_hint(example_copy) -> None:
    folder = example_copy(
        "random_walk", lambda t: t.replace('moves: "moves + 1"', 'moves: "movez + 1"')
    )
    report = check(folder)
    [problem] = report.problems
    assert problem.level == "error"
    assert problem.key_path == "pipeline.steps[0].expressions.moves"
    assert problem.line == line_of(folder, 'moves: "movez + 1"')
    assert "'movez'" in problem.message
    assert problem.hint == "moves"


def test_bad_expression_syntax(example_copy) -> None:
    folder = example_copy(
        "random_walk", lambda t: t.replace('trail: "trail + [square]"', 'trail: "trail + [square"')
    )
    [problem] = check(folder).problems
    assert problem.key_path == "pipeline.steps[0].expressions.trail"
    assert "bad expression" in problem.message


def test_unsafe_expression_is_refused(example_copy) -> None:
    folder = example_copy(
        "random_walk",
        lambda t: t.replace('moves: "moves + 1"', "moves: \"__import__('os').getpid()\""),
    )
    [problem] = check(folder).problems
    assert problem.key_path == "pipeline.steps[0].expressions.moves"


def test_rule_naming_unknown_field(example_copy) -> None:
    folder = example_copy(
        "random_walk", lambda t: t.replace('expr: "move_count < 200"', 'expr: "move_cnt < 200"')
    )
    [problem] = check(folder).problems
    assert problem.key_path == "validation.report.rules[3].expr"
    assert problem.hint == "move_count"
    assert problem.line == line_of(folder, "move_cnt")


def test_required_field_unknown_to_schema_and_items(example_copy) -> None:
    folder = example_copy(
        "random_walk",
        lambda t: t.replace(
            "required: [end_square, move_count, ending]",
            "required: [end_square, move_count, endng]",
        ),
    )
    [problem] = check(folder).problems
    assert problem.key_path == "validation.report.required.endng"
    assert problem.hint == "ending"


def test_rules_do_not_see_global_context(example_copy) -> None:
    """global_context feeds templates only; a rule reading it would fail every unit."""
    folder = example_copy(
        "persona_panel",
        lambda t: t.replace(
            'expr: "len(message.split()) <= 80"', 'expr: "len(message.split()) <= word_limit"'
        ),
    )
    [problem] = check(folder).problems
    assert "'word_limit'" in problem.message
    assert problem.key_path == "validation.write.rules[1].expr"


def test_template_variable_that_nothing_defines(example_copy) -> None:
    folder = example_copy("persona_panel")
    template = folder / "templates" / "judge.jinja2"
    template.write_text(template.read_text().replace("{{ message }}", "{{ mesage }}"))
    [problem] = check(folder).problems
    assert "'mesage'" in problem.message
    assert problem.hint == "message"
    assert problem.key_path == "prompts.templates.judge"


def test_template_syntax_error_names_template_and_line(example_copy) -> None:
    folder = example_copy("random_walk")
    template = folder / "templates" / "report.jinja2"
    template.write_text("line one\n{% if %}\n")
    [problem] = check(folder).problems
    assert problem.file.endswith("report.jinja2")
    assert problem.line == 2


def test_trial_run_reports_a_real_runtime_error(example_copy) -> None:
    """An expression that only reads item fields and fails on the first unit is an error."""
    folder = example_copy(
        "random_walk",
        lambda t: t.replace('trail: "[start_square]"', 'trail: "[start_square] + start_square"'),
    )
    [problem] = check(folder).problems
    assert problem.level == "error"
    assert "trial run" in problem.message
    assert problem.key_path == "pipeline.steps[0].init.trail"


def test_fan_out_children_fields_are_known(tmp_path: Path) -> None:
    folder = tmp_path / "fan"
    (folder / "templates").mkdir(parents=True)
    (folder / "items.yaml").write_text("boxes:\n  - name: b1\n    things: [x, y, z]\n")
    (folder / "templates" / "t.jinja2").write_text("Describe {{ thing }} ({{ _fan_index }})")
    (folder / "config.yaml").write_text(
        "pipeline:\n  steps:\n"
        "    - {name: split, scope: fan_out, field: things, child_field: thing}\n"
        "    - {name: describe}\n"
        "processing:\n  strategy: direct\n  items: {source: items.yaml, key: boxes}\n"
        "prompts:\n  templates: {describe: t.jinja2}\n"
    )
    report = check(folder)
    assert [p.level for p in report.problems] == ["warning"]  # no schema for 'describe'
    assert report.steps[0].fan_out_ratio == 3
    assert report.steps[1].calls == 3
