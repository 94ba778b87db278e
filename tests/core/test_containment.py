"""Containment after following links: the template loader, the folder scan, the contained copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from octopipe.core.containment import Escape, copy_contained, escapes_in, resolve_inside
from octopipe.core.prompts import PromptRenderer, template_syntax_error, template_variables
from octopipe.errors import RenderError


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(pipeline root, its templates folder, a secret file outside the root)."""
    root = tmp_path / "pipeline"
    (root / "templates").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    return root, root / "templates", secret


def render(templates: Path, root: Path, text: str) -> str:
    (templates / "t.j2").write_text(text)
    renderer = PromptRenderer(templates, "t.j2", config={}, global_context={}, root=root)
    return renderer.render({"x": 1})


@pytest.mark.parametrize(
    "tag", ['{% include "leak.txt" %}', '{% import "leak.txt" as m %}', '{% extends "leak.txt" %}']
)
def test_the_loader_refuses_a_link_outside_at_render_and_at_check(
    layout: tuple[Path, Path, Path], tag: str
) -> None:
    root, templates, secret = layout
    (templates / "leak.txt").symlink_to(secret)
    with pytest.raises(RenderError) as exc:
        render(templates, root, f"{tag}{{{{ x }}}}")
    assert exc.value.template == "leak.txt"
    assert exc.value.detail == (
        f"'leak.txt' is a link to {os.path.realpath(secret)}, outside the pipeline folder; "
        "templates read only files inside it"
    )
    assert "SECRET" not in str(exc.value)
    with pytest.raises(RenderError) as again:
        template_variables(templates, "t.j2", root)
    assert again.value.detail == exc.value.detail
    error = template_syntax_error(templates, "t.j2", root)
    assert error is not None and error.detail == exc.value.detail


def test_a_dynamic_include_of_a_link_is_refused_too(layout: tuple[Path, Path, Path]) -> None:
    root, templates, secret = layout
    (templates / "leak.txt").symlink_to(secret)
    (templates / "t.j2").write_text("{% include name %}")
    renderer = PromptRenderer(templates, "t.j2", config={}, global_context={}, root=root)
    with pytest.raises(RenderError) as exc:
        renderer.render({"name": "leak.txt"})
    assert "is a link to" in exc.value.detail


def test_the_loader_follows_links_that_stay_inside(layout: tuple[Path, Path, Path]) -> None:
    root, templates, _ = layout
    (root / "shared").mkdir()
    (root / "shared" / "part.txt").write_text("PART")
    (templates / "part.txt").symlink_to(Path("../shared/part.txt"))
    assert render(templates, root, '{% include "part.txt" %}:{{ x }}') == "PART:1"


def test_resolve_inside_names_the_link_and_its_target(layout: tuple[Path, Path, Path]) -> None:
    root, templates, secret = layout
    (templates / "leak.txt").symlink_to(secret)
    with pytest.raises(Escape) as exc:
        resolve_inside(Path(os.path.realpath(root)), templates / "leak.txt")
    assert exc.value.reason == (
        f"templates/leak.txt is a link to {os.path.realpath(secret)}, outside the pipeline folder"
    )


def test_the_scan_finds_links_out_and_loops_once_each(layout: tuple[Path, Path, Path]) -> None:
    root, templates, secret = layout
    (templates / "a.txt").write_text("fine")
    (templates / "leak.txt").symlink_to(secret)
    (templates / "up").symlink_to(root)
    (templates / "dangling").symlink_to(root / "nothing")
    found = sorted(e.shown for e in escapes_in(Path(os.path.realpath(root)), templates))
    assert found == ["templates/leak.txt", "templates/up"]


def test_the_contained_copy_copies_real_files_and_refuses_escapes(
    layout: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, templates, secret = layout
    real_root = Path(os.path.realpath(root))
    (root / "shared").mkdir()
    (root / "shared" / "part.txt").write_text("PART")
    (templates / "part.txt").symlink_to(root / "shared" / "part.txt")
    (templates / "sub").symlink_to(root / "shared")
    (templates / "dangling").symlink_to(root / "nothing")
    copy_contained(real_root, templates, tmp_path / "copy")
    copied = sorted(p.relative_to(tmp_path / "copy") for p in (tmp_path / "copy").rglob("*"))
    assert copied == [Path("part.txt"), Path("sub"), Path("sub/part.txt")]
    assert not any(p.is_symlink() for p in (tmp_path / "copy").rglob("*"))
    (templates / "leak.txt").symlink_to(secret)
    with pytest.raises(Escape):
        copy_contained(real_root, templates, tmp_path / "again")
    assert not (tmp_path / "again" / "leak.txt").exists()
