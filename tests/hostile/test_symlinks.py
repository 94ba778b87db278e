"""Symlinks in a pipeline folder: a link pointing outside it is refused wherever the pipeline
could reach it (templates and what they include, schemas, items, config, folders a run
copies), naming the link and its target; links pointing inside the folder keep working."""

from __future__ import annotations

import os
from pathlib import Path

from support.hostile import Result, Sandbox


def real(path: Path) -> str:
    return os.path.realpath(path)


def run_all(sandbox: Sandbox) -> list[Result]:
    return [
        sandbox.octopipe("validate", sandbox.pipeline),
        sandbox.octopipe("try", sandbox.pipeline, "--unit", "a"),
        sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "x"),
    ]


def assert_refused(sandbox: Sandbox, message: str) -> None:
    results = run_all(sandbox)
    for result in results:
        assert result.code == 2, result
        assert message in result.err, result
        assert "Traceback" not in result.text, result
    assert not (sandbox.runs / "x").exists()
    sandbox.assert_contained(*results)


def test_an_included_link_to_a_file_outside_is_refused(sandbox: Sandbox) -> None:
    sandbox.link("templates/leak.txt", sandbox.secret)
    sandbox.write("templates/judge.jinja2", '{{ value }} {% include "leak.txt" %}\n')
    assert_refused(
        sandbox, f"templates/leak.txt is a link to {real(sandbox.secret)}, outside the pipeline"
    )


def test_an_unused_link_in_the_templates_folder_is_refused_because_runs_copy_it(
    sandbox: Sandbox,
) -> None:
    sandbox.link("templates/notes.txt", sandbox.secret)
    assert_refused(
        sandbox,
        f"templates/notes.txt is a link to {real(sandbox.secret)}, outside the pipeline folder; "
        "a run copies this folder, so it is refused",
    )


def test_a_link_to_a_folder_outside_in_schemas_is_refused(sandbox: Sandbox) -> None:
    sandbox.link("schemas/ext", sandbox.outside)
    assert_refused(sandbox, f"schemas/ext is a link to {real(sandbox.outside)}, outside")


def test_a_link_deep_inside_a_linked_inside_folder_is_found(sandbox: Sandbox) -> None:
    sandbox.write("partials/readme.txt", "fine\n")
    sandbox.link("partials/deeper/leak.txt", sandbox.secret)
    sandbox.link("templates/partials", sandbox.pipeline / "partials")
    assert_refused(
        sandbox, f"templates/partials/deeper/leak.txt is a link to {real(sandbox.secret)}"
    )


def test_a_link_looping_back_to_its_own_folder_is_refused(sandbox: Sandbox) -> None:
    sandbox.link("templates/loop", sandbox.pipeline)
    assert_refused(
        sandbox,
        f"templates/loop is a link to {real(sandbox.pipeline)}, a folder that contains it",
    )


def test_the_template_folder_itself_may_not_point_outside(sandbox: Sandbox) -> None:
    (sandbox.outside / "judge.jinja2").write_text("{{ value }}\n")
    sandbox.edit_config("  template_dir: templates\n", "  template_dir: tpl\n")
    sandbox.link("tpl", sandbox.outside)
    assert_refused(
        sandbox, f"template folder 'tpl': tpl is a link to {real(sandbox.outside)}, outside"
    )


def test_a_schema_that_is_a_link_outside_is_refused(sandbox: Sandbox) -> None:
    (sandbox.pipeline / "schemas" / "judge.json").unlink()
    sandbox.link("schemas/judge.json", sandbox.secret)
    assert_refused(sandbox, "schemas/judge.json is a link to")


def test_items_that_are_a_link_outside_are_refused(sandbox: Sandbox) -> None:
    (sandbox.outside / "items.yaml").write_text(
        f"items:\n  - {{name: a, value: {sandbox.canary!r}}}\n"
    )
    (sandbox.pipeline / "items.yaml").unlink()
    sandbox.link("items.yaml", sandbox.outside / "items.yaml")
    assert_refused(
        sandbox,
        f"items file 'items.yaml': items.yaml is a link to {real(sandbox.outside / 'items.yaml')}",
    )


def test_a_config_that_is_a_link_outside_is_refused(sandbox: Sandbox) -> None:
    config = sandbox.pipeline / "config.yaml"
    (sandbox.outside / "config.yaml").write_text(config.read_text())
    config.unlink()
    sandbox.link("config.yaml", sandbox.outside / "config.yaml")
    assert_refused(sandbox, f"config.yaml is a link to {real(sandbox.outside / 'config.yaml')}")


def test_links_that_stay_inside_the_folder_work_and_are_copied_as_files(sandbox: Sandbox) -> None:
    sandbox.write("shared/judge.jinja2", '{% include "partial.txt" %} {{ value }}\n')
    sandbox.write("shared/partial.txt", "PARTIAL-TEXT")
    (sandbox.pipeline / "templates" / "judge.jinja2").unlink()
    sandbox.link("templates/judge.jinja2", sandbox.pipeline / "shared" / "judge.jinja2")
    sandbox.link("templates/partial.txt", Path("../shared/partial.txt"))
    validated = sandbox.octopipe("validate", sandbox.pipeline)
    tried = sandbox.octopipe("try", sandbox.pipeline, "--unit", "a")
    ran = sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "ok")
    assert validated.code == 0, validated
    assert tried.code == 0 and "PARTIAL-TEXT 1" in tried.out, tried
    assert ran.code == 0, ran
    copied = sandbox.runs / "ok" / "config" / "templates"
    for name in ("judge.jinja2", "partial.txt"):
        assert (copied / name).is_file() and not (copied / name).is_symlink()
    assert (copied / "partial.txt").read_text() == "PARTIAL-TEXT"
    sandbox.assert_contained(validated, tried, ran)
