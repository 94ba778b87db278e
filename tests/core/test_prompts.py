"""Prompt rendering: context precedence, strictness, the sandbox, and RenderError everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from octopipe.core.prompts import PromptRenderer, template_syntax_error, template_variables
from octopipe.errors import RenderError

CONFIG: dict[str, Any] = {
    "pipeline": {"name": "npc"},
    "api": {"provider": "openai", "model": "gpt-x"},
    "tone": "from the flattened config",
}


def templates(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        target = folder / name.replace("__", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return folder


def renderer(
    folder: Path, name: str = "t.j2", global_context: dict[str, Any] | None = None
) -> PromptRenderer:
    return PromptRenderer(folder, name, config=CONFIG, global_context=global_context or {})


def test_config_values_and_global_context_render(tmp_path: Path) -> None:
    folder = templates(
        tmp_path, **{"t.j2": "{{ config.api.model }}|{{ api.provider }}|{{ style }}|{{ who }}\n"}
    )
    prompt = renderer(folder, global_context={"style": "terse"}).render({"who": "Ann"})
    assert prompt == "gpt-x|openai|terse|Ann\n"


@pytest.mark.parametrize(
    ("global_context", "fields", "expected"),
    [
        ({}, {}, "from the flattened config"),
        ({"tone": "from global_context"}, {}, "from global_context"),
        ({"tone": "from global_context"}, {"tone": "from the unit"}, "from the unit"),
    ],
)
def test_context_precedence_unit_over_global_over_config(
    tmp_path: Path, global_context: dict[str, Any], fields: dict[str, Any], expected: str
) -> None:
    folder = templates(tmp_path, **{"t.j2": "{{ tone }}"})
    assert renderer(folder, global_context=global_context).render(fields) == expected


def test_config_variable_can_be_shadowed_by_global_context_then_by_the_unit(
    tmp_path: Path,
) -> None:
    folder = templates(tmp_path, **{"t.j2": "{{ config }}"})
    assert renderer(folder, global_context={"config": "g"}).render({}) == "g"
    assert renderer(folder, global_context={"config": "g"}).render({"config": "u"}) == "u"


def test_output_is_verbatim_no_escaping_and_trailing_newline_kept(tmp_path: Path) -> None:
    folder = templates(tmp_path, **{"t.j2": "<b>{{ text }}</b>\n\n"})
    assert renderer(folder).render({"text": 'Tom & "Jerry" <3'}) == '<b>Tom & "Jerry" <3</b>\n\n'


def test_undefined_variable_is_a_render_error_naming_it_and_its_line(tmp_path: Path) -> None:
    folder = templates(tmp_path, **{"t.j2": "Hello {{ who }}\nYou feel {{ mood }}.\n"})
    with pytest.raises(RenderError) as excinfo:
        renderer(folder).render({"who": "Ann"})
    error = excinfo.value
    assert (error.template, error.line) == ("t.j2", 2)
    assert error.detail == "'mood' is undefined"
    assert str(error) == "t.j2:2: 'mood' is undefined"


def test_missing_attribute_is_a_render_error(tmp_path: Path) -> None:
    folder = templates(tmp_path, **{"t.j2": "{{ card.suit }}"})
    with pytest.raises(RenderError) as excinfo:
        renderer(folder).render({"card": {"name": "Sun"}})
    assert excinfo.value.detail == "'dict object' has no attribute 'suit'"


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("{{ ''.__class__.__mro__ }}", "'__class__' of 'str'"),
        ("{{ card.__class__ }}", "'__class__' of 'dict'"),
        ("{{ lipsum.__globals__ }}", "'__globals__' of 'function'"),
        ("{{ cycler.__init__.__globals__.os }}", "'__init__' of 'type'"),
        ("{{ card.items.__self__ }}", "'__self__' of 'builtin_function_or_method'"),
    ],
)
def test_sandbox_blocks_internal_attribute_access(
    tmp_path: Path, source: str, refused: str
) -> None:
    folder = templates(tmp_path, **{"t.j2": source})
    with pytest.raises(RenderError) as excinfo:
        renderer(folder).render({"card": {"name": "Sun"}})
    assert excinfo.value.line == 1
    assert excinfo.value.detail == (
        f"refused by the sandbox: access to attribute {refused} object is unsafe."
    )


def test_sandbox_blocks_mutating_unit_values(tmp_path: Path) -> None:
    folder = templates(tmp_path, **{"t.j2": "{{ hand.append('ace') }}"})
    hand = ["king"]
    with pytest.raises(RenderError, match="refused by the sandbox"):
        renderer(folder).render({"hand": hand})
    assert hand == ["king"]


def test_namespace_assignments_still_work_in_the_sandbox(tmp_path: Path) -> None:
    source = "{% set ns = namespace(total=0) %}{% for c in cards %}{% set ns.total = ns.total + c %}{% endfor %}{{ ns.total }}"
    folder = templates(tmp_path, **{"t.j2": source})
    assert renderer(folder).render({"cards": [2, 3, 10]}) == "15"


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        (
            "{{ 'ab' * 10000000 }}",
            "refused by the sandbox: str * 10000000 would have 20,000,000 elements (limit 10,000,000)",
        ),
        ("{{ 3 * [1, 2, 3, 4] * 3000000 }}", "refused by the sandbox: list * 3000000 would have"),
        ("{{ 7 ** 1000000 }}", "refused by the sandbox: 7 ** 1000000 is too large (limit 100,000"),
        ("{{ range(10**6) | list }}", "OverflowError: Range too big."),
    ],
)
def test_sandbox_refuses_memory_bombs(tmp_path: Path, source: str, detail: str) -> None:
    folder = templates(tmp_path, **{"t.j2": source})
    with pytest.raises(RenderError) as excinfo:
        renderer(folder).render({})
    assert excinfo.value.detail.startswith(detail)


def test_small_repetition_and_powers_still_work(tmp_path: Path) -> None:
    folder = templates(tmp_path, **{"t.j2": "{{ '-' * 3 }}{{ 2 ** 10 }}{{ [0] * 2 }}"})
    assert renderer(folder).render({}) == "---1024[0, 0]"


def test_include_inside_the_folder_works_and_escaping_it_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("SECRET", encoding="utf-8")
    folder = templates(
        tmp_path,
        **{
            "ok.j2": "[{% include 'parts/header.j2' %}]",
            "parts__header.j2": "Dear {{ who }}",
            "escape.j2": "{% include '../secret.txt' %}",
        },
    )
    assert renderer(folder, "ok.j2").render({"who": "Ann"}) == "[Dear Ann]"
    with pytest.raises(RenderError) as excinfo:
        renderer(folder, "escape.j2").render({})
    assert "'../secret.txt' not found" in excinfo.value.detail
    assert "SECRET" not in str(excinfo.value)


def test_template_name_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    folder = templates(tmp_path, **{"t.j2": "x"})
    (tmp_path / "outside.j2").write_text("outside", encoding="utf-8")
    with pytest.raises(RenderError, match="not found"):
        renderer(folder, "../outside.j2")


def test_error_in_an_included_template_names_that_template(tmp_path: Path) -> None:
    folder = templates(
        tmp_path, **{"t.j2": "top\n{% include 'inner.j2' %}", "inner.j2": "a\nb\n{{ nope }}"}
    )
    with pytest.raises(RenderError) as excinfo:
        renderer(folder).render({})
    assert (excinfo.value.template, excinfo.value.line) == ("inner.j2", 3)


def test_any_exception_while_rendering_becomes_a_render_error(tmp_path: Path) -> None:
    folder = templates(tmp_path, **{"t.j2": "ok\n{{ n / 0 }}"})
    with pytest.raises(RenderError) as excinfo:
        renderer(folder).render({"n": 1})
    assert excinfo.value.detail == "ZeroDivisionError: division by zero"
    assert excinfo.value.line == 2


def test_syntax_error_is_raised_once_at_construction_with_its_line(tmp_path: Path) -> None:
    folder = templates(tmp_path, **{"t.j2": "fine\n\n{{ x + }}\n"})
    with pytest.raises(RenderError) as excinfo:
        renderer(folder)
    assert excinfo.value.template == "t.j2"
    assert excinfo.value.line == 3
    assert excinfo.value.detail.startswith("syntax error:")


def test_missing_template_is_a_render_error(tmp_path: Path) -> None:
    folder = templates(tmp_path, **{"t.j2": "x"})
    with pytest.raises(RenderError, match=r"'absent\.j2' not found"):
        renderer(folder, "absent.j2")


def test_template_is_loaded_once_not_per_render(tmp_path: Path) -> None:
    folder = templates(tmp_path, **{"t.j2": "v1 {{ n }}"})
    prompts = renderer(folder)
    (folder / "t.j2").write_text("v2 {{ n }}", encoding="utf-8")
    assert [prompts.render({"n": n}) for n in range(3)] == ["v1 0", "v1 1", "v1 2"]


def test_template_variables_follow_includes_and_skip_assigned_names(tmp_path: Path) -> None:
    folder = templates(
        tmp_path,
        **{
            "t.j2": (
                "{% set greeting = 'hi' %}{{ greeting }} {{ who }} {{ config.api.model }}\n"
                "{% for c in cards %}{{ c.name }}{{ loop.index }}{% endfor %}{{ range(3) | list }}\n"
                "{% include 'inner.j2' %}{% include dynamic_name %}"
            ),
            "inner.j2": "{{ mood }} {{ greeting }}",
        },
    )
    assert template_variables(folder, "t.j2") == frozenset(
        {"who", "config", "cards", "mood", "dynamic_name"}
    )


def test_template_syntax_error_checks_included_templates(tmp_path: Path) -> None:
    folder = templates(
        tmp_path,
        **{"good.j2": "{{ a }}", "outer.j2": "{% include 'bad.j2' %}", "bad.j2": "x\n{{ a + }}"},
    )
    assert template_syntax_error(folder, "good.j2") is None
    error = template_syntax_error(folder, "outer.j2")
    assert error is not None
    assert (error.template, error.line) == ("bad.j2", 2)
    missing = template_syntax_error(folder, "absent.j2")
    assert missing is not None
    assert "not found" in missing.detail
    with pytest.raises(RenderError, match="syntax error"):
        template_variables(folder, "outer.j2")


def test_a_render_leaves_nothing_for_the_next_and_does_not_change_the_fields(
    tmp_path: Path,
) -> None:
    source = "{% if seen is defined %}leak {% endif %}{% set seen = 1 %}{% set tone = 'x' %}"
    folder = templates(tmp_path, **{"t.j2": source + "{{ tone }} {{ n }}"})
    r = renderer(folder)
    fields = {"n": 1}
    assert r.render(fields) == "x 1"
    assert r.render({"n": 2}) == "x 2"
    assert fields == {"n": 1}
    assert renderer(templates(tmp_path, **{"u.j2": "{{ tone }}"}), "u.j2").render({}) == (
        "from the flattened config"
    )


def test_the_same_text_as_jinja_renders_with_globals_loops_macros_and_includes(
    tmp_path: Path,
) -> None:
    folder = templates(
        tmp_path,
        **{
            "t.j2": "{% macro m(x) %}<{{ x }}>{% endmacro %}"
            "{% for i in range(n) %}{{ m(i) }}{% endfor %} {{ api.model }} "
            "{% include 'inc.j2' %}",
            "inc.j2": "{{ pipeline.name }}/{{ n }}",
        },
    )
    r = renderer(folder, global_context={"extra": 1})
    expected = r._template.render({"n": 3})
    assert r.render({"n": 3}) == expected == "<0><1><2> gpt-x npc/3"
