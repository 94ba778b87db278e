"""Loading pipeline folders: every problem names its file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from octopipe.core.config import load_pipeline
from octopipe.core.config_models import ExpressionStep, LLMStep
from octopipe.errors import ConfigError, ConfigProblem
from support.paths import EXAMPLE_NAMES, EXAMPLES, line_of


def problems_of(folder: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_pipeline(folder)
    return info.value.problems


def only_problem(folder: Path) -> ConfigProblem:
    problems = problems_of(folder)
    assert len(problems) == 1, [p.render() for p in problems]
    return problems[0]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples_load_without_warnings(name: str) -> None:
    pipeline = load_pipeline(EXAMPLES / name)
    assert pipeline.name == name
    assert pipeline.warnings == ()


def test_steps_are_typed_by_scope() -> None:
    pipeline = load_pipeline(EXAMPLES / "card_game")
    kinds = [type(s) for s in pipeline.steps]
    assert kinds == [ExpressionStep, LLMStep, ExpressionStep, ExpressionStep]
    deal = pipeline.steps[0]
    assert isinstance(deal, ExpressionStep)
    assert deal.expressions["opening"] == "_dealt[:2]"


def test_models_are_frozen() -> None:
    pipeline = load_pipeline(EXAMPLES / "random_walk")
    with pytest.raises(ValueError):
        pipeline.config.processing.repeat = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "key_path", "hint", "line_needle"),
    [
        pytest.param(
            "loop_until:",
            "loop_untill:",
            "pipeline.steps[0].loop_untill",
            "loop_until",
            "loop_untill",
            id="step key",
        ),
        pytest.param(
            "chunk_size: 100",
            "chunksize: 100",
            "processing.chunksize",
            "chunk_size",
            "chunksize",
            id="section key",
        ),
        pytest.param(
            "level: warning",
            "levle: warning",
            "validation.report.rules[3].levle",
            "level",
            None,
            id="rule key",
        ),
        pytest.param(
            "scope: expression",
            "scope: expresion",
            "pipeline.steps[0].scope",
            "expression",
            "scope: expresion",
            id="scope value",
        ),
        pytest.param(
            "strategy: direct", "strategy: directt", None, "direct", None, id="strategy value"
        ),
        pytest.param(
            "validation:\n  report:",
            "validation:\n  reprot:",
            "validation.reprot",
            "report",
            "reprot:",
            id="validation entry naming no step",
        ),
    ],
)
def test_a_misspelt_name_is_found_with_its_path_line_and_suggestion(
    example_copy, old: str, new: str, key_path: str | None, hint: str, line_needle: str | None
) -> None:
    folder = example_copy("random_walk", lambda t: t.replace(old, new))
    problem = only_problem(folder)
    assert problem.hint == hint
    if key_path is not None:
        assert problem.key_path == key_path
    if line_needle is not None:
        assert problem.line == line_of(folder, line_needle)
    assert problem.file.endswith("config.yaml")


def test_wrong_type_names_the_key(example_copy) -> None:
    folder = example_copy("random_walk", lambda t: t.replace("repeat: 100", "repeat: many"))
    problem = only_problem(folder)
    assert problem.key_path == "processing.repeat"
    assert "integer" in problem.message
    assert problem.line == line_of(folder, "repeat: many")


def test_missing_template_file(example_copy) -> None:
    folder = example_copy("random_walk")
    (folder / "templates" / "report.jinja2").unlink()
    problem = only_problem(folder)
    assert problem.key_path == "prompts.templates.report"
    assert "does not exist" in problem.message
    assert problem.line == line_of(folder, "report: report.jinja2")


def test_llm_step_without_any_template(example_copy) -> None:
    def edit(text: str) -> str:
        return text.replace("      prompt_template: report.jinja2\n", "").replace(
            "  templates:\n    report: report.jinja2\n", "  templates: {}\n"
        )

    problem = only_problem(example_copy("random_walk", edit))
    assert "no template" in problem.message
    assert problem.key_path == "pipeline.steps[1]"


def test_parent_path_escape_is_refused(example_copy) -> None:
    folder = example_copy(
        "random_walk", lambda t: t.replace("source: items.yaml", "source: ../items.yaml")
    )
    (folder.parent / "items.yaml").write_text("tracks: []\n")  # exists, but outside
    problem = only_problem(folder)
    assert problem.key_path == "processing.items.source"
    assert "outside the pipeline folder" in problem.message


def test_template_dir_escape_is_refused(example_copy) -> None:
    folder = example_copy(
        "random_walk", lambda t: t.replace("template_dir: templates", "template_dir: ../../etc")
    )
    messages = [p.message for p in problems_of(folder)]
    assert any("outside the pipeline folder" in m for m in messages)


def test_malformed_yaml_names_the_line(example_copy) -> None:
    folder = example_copy("random_walk", lambda t: t.replace("repeat: 100", "repeat: [100"))
    problem = only_problem(folder)
    assert "invalid YAML" in problem.message
    assert problem.line is not None and problem.line >= line_of(folder, "repeat: [100")


def test_schema_that_is_not_json(example_copy) -> None:
    folder = example_copy("random_walk")
    (folder / "schemas" / "report.json").write_text('{"type": "object",}')
    problem = only_problem(folder)
    assert problem.key_path == "schemas.files.report"
    assert "not JSON" in problem.message


def test_schema_that_is_not_a_schema(example_copy) -> None:
    folder = example_copy("random_walk")
    (folder / "schemas" / "report.json").write_text('{"type": "objekt"}')
    assert "not a valid JSON Schema" in only_problem(folder).message


def test_unknown_provider(example_copy) -> None:
    folder = example_copy(
        "random_walk", lambda t: t.replace("api:\n", "api:\n  provider: opneai\n")
    )
    problem = only_problem(folder)
    assert (problem.key_path, problem.hint) == ("api.provider", "openai")


def test_duplicate_step_names(example_copy) -> None:
    folder = example_copy("random_walk", lambda t: t.replace("- name: report", "- name: walk"))
    messages = [p.message for p in problems_of(folder)]
    assert any("duplicate step name 'walk'" in m for m in messages)


def test_every_problem_is_reported_not_only_the_first(example_copy) -> None:
    def edit(text: str) -> str:
        return text.replace("chunk_size: 100", "chunksize: 100").replace(
            "repeat: 100", "repeat: -1"
        )

    paths = {p.key_path for p in problems_of(example_copy("random_walk", edit))}
    assert paths == {"processing.chunksize", "processing.repeat"}


def test_missing_config_file(tmp_path: Path) -> None:
    assert "no config.yaml" in only_problem(tmp_path).message


def test_documented_but_ignored_keys_have_values() -> None:
    pipeline = load_pipeline(EXAMPLES / "persona_panel")
    config = pipeline.config
    assert config.processing.validation_retry.max_attempts == 4
    assert config.api.poll_interval_seconds == 30
    assert config.api.realtime.auto_retry is True
    assert config.schemas.strict_mode is False


def test_scalar_expressions_become_source_text() -> None:
    pipeline = load_pipeline(EXAMPLES / "random_walk")
    walk = pipeline.steps[0]
    assert isinstance(walk, ExpressionStep)
    assert walk.init["moves"] == "0"
