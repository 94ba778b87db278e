"""Finding the code a pipeline folder carries (listed by ``validate``; never run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from octopipe.core import pipeline_code
from octopipe.core.config import load_pipeline
from octopipe.core.pipeline_code import CodeFile, folder_code

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(folder: Path, relative: str, text: str = "", mode: int | None = None) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def listed(folder: Path) -> dict[str, str]:
    return {f.path: f.kind for f in folder_code(folder).files}


def test_code_is_found_by_suffix_executable_bit_and_shebang(tmp_path: Path) -> None:
    write(tmp_path, "emulator_answers.py", "x = 1")
    write(tmp_path, "lib/deep/helper.PY")
    write(tmp_path, "tools/run.sh")
    write(tmp_path, "tools/native.so")
    write(tmp_path, "bin/tool", "binary", mode=0o755)
    write(tmp_path, "bin/script", "#!/usr/bin/env python3\nprint()\n")
    write(tmp_path, "items.yaml", "items: []", mode=0o644)
    write(tmp_path, "templates/t.jinja2", "# not a shebang")

    assert listed(tmp_path) == {
        "emulator_answers.py": "python",
        "lib/deep/helper.PY": "python",
        "tools/run.sh": "executable",
        "tools/native.so": "executable",
        "bin/tool": "executable",
        "bin/script": "executable",
    }


def test_links_are_listed_by_name_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "evil.py")
    write(outside, "tool", "x", mode=0o755)
    folder = tmp_path / "pipeline"
    folder.mkdir()
    (folder / "hook.py").symlink_to(outside / "evil.py")
    (folder / "innocent.txt").symlink_to(outside / "tool")  # executable target, harmless name
    (folder / "linked_dir").symlink_to(outside, target_is_directory=True)

    assert listed(folder) == {"hook.py": "python"}


def test_git_and_pycache_folders_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, ".git/hooks/pre-commit", "#!/bin/sh\n", mode=0o755)
    write(tmp_path, "__pycache__/x.cpython-311.pyc")
    write(tmp_path, "lib/__pycache__/y.cpython-311.pyc")
    write(tmp_path, ".hidden/run.py")

    assert listed(tmp_path) == {".hidden/run.py": "python"}


def test_scripts_the_config_names_are_listed_with_their_key(tmp_path: Path) -> None:
    folder = tmp_path / "card_game"
    shutil.copytree(EXAMPLES / "card_game", folder)
    write(folder, "scripts/finish.sh")
    config = folder / "config.yaml"
    config.write_text(
        config.read_text().replace(
            "\n  steps:\n",
            "\n  steps:\n    - name: finish\n      scope: run\n      script: ./scripts/finish.sh\n",
            1,
        )
    )
    files = {f.path: f for f in folder_code(folder, load_pipeline(folder)).files}

    assert files["scripts/finish.sh"] == CodeFile(
        "scripts/finish.sh",
        "script",
        "pipeline.steps[0].script",
        "runs only with `--allow-scripts` (or `--allow-script finish`) on run/post: "
        "python scripts/finish.sh --run-dir RUN_DIR --step-name finish "
        "--config RUN_DIR/config/config.yaml",
    )
    analysis = files["scripts/analyze_results.py"]
    assert (analysis.kind, analysis.named_by) == ("script", "post_process[0].script")
    assert analysis.runs.startswith("built-in: octopipe's own analysis runs instead")
    hook = files["emulator_answers.py"]
    assert hook.kind == "python"
    assert f"--answers {folder.resolve() / 'emulator_answers.py'}" in hook.runs


def test_a_folder_without_code_lists_nothing(tmp_path: Path) -> None:
    write(tmp_path, "config.yaml", "pipeline: {}")
    write(tmp_path, "items.csv", "a,b")
    write(tmp_path, "schemas/s.json", "{}")

    assert folder_code(tmp_path).files == []


def test_a_named_script_that_does_not_exist_is_still_listed(tmp_path: Path) -> None:
    folder = tmp_path / "random_walk"
    shutil.copytree(EXAMPLES / "random_walk", folder)
    (folder / "emulator_answers.py").unlink()

    files = folder_code(folder, load_pipeline(folder)).files

    assert [(f.path, f.named_by) for f in files] == [
        ("scripts/analyze_results.py", "post_process[0].script")
    ]


def test_the_walk_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_code, "MAX_ENTRIES", 3)
    for i in range(5):
        write(tmp_path, f"f{i}.py")
    listing = folder_code(tmp_path)

    assert not listing.complete
    assert [f.path for f in listing.files] == ["f0.py", "f1.py", "f2.py"]
