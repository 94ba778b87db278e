"""``init``'s snapshot holds only real files from inside the pipeline folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from octopipe.core.config import load_pipeline
from octopipe.engine.create import RunOptions, create_run, snapshot
from octopipe.engine.queries import run_info
from octopipe.errors import ConfigError
from support.runner import write_pipeline

STEPS = "    - name: judge\n      prompt_template: judge.jinja2\n"


def pipeline_folder(tmp_path: Path) -> Path:
    folder = write_pipeline(tmp_path / "p", STEPS, "items:\n  - {name: a}\n")
    (folder / "templates").mkdir()
    (folder / "templates" / "judge.jinja2").write_text("{{ name }}\n")
    return folder


def test_a_link_out_added_after_load_is_refused_by_the_snapshot(tmp_path: Path) -> None:
    folder = pipeline_folder(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    pipeline = load_pipeline(folder)
    (folder / "templates" / "leak.txt").symlink_to(secret)
    with pytest.raises(ConfigError) as exc:
        snapshot(pipeline, tmp_path / "snap")
    (problem,) = exc.value.problems
    assert problem.message == (
        f"templates/leak.txt is a link to {os.path.realpath(secret)}, outside the pipeline folder"
    )
    assert not (tmp_path / "snap" / "templates" / "leak.txt").exists()


def test_files_keep_the_names_the_config_uses(tmp_path: Path) -> None:
    folder = pipeline_folder(tmp_path)
    (folder / "data").mkdir()
    (folder / "items.yaml").rename(folder / "data" / "items.yaml")
    (folder / "items.yaml").symlink_to(Path("data/items.yaml"))
    snapshot(load_pipeline(folder), tmp_path / "snap")
    copied = tmp_path / "snap" / "items.yaml"
    assert copied.is_file() and not copied.is_symlink()
    assert load_pipeline(tmp_path / "snap").items_path.read_text() == "items:\n  - {name: a}\n"


def test_a_run_is_named_after_the_pipeline_folder_not_its_snapshot(tmp_path: Path) -> None:

    folder = pipeline_folder(tmp_path)  # config.yaml has no pipeline.name: the folder names it
    created = create_run(folder, tmp_path / "runs", RunOptions(name="r1"))
    assert run_info(created.paths).pipeline_name == "p"
