"""Octobatch's path conventions for scripts, and the places a run may write, as ``validate``
checks them (``core/scripts.py``, ``core/config.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from octopipe.core.config import load_pipeline
from octopipe.core.scripts import output_problem, resolve_script
from octopipe.errors import ConfigError
from support.paths import EXAMPLES, demo


def test_the_conventions(tmp_path: Path) -> None:
    (tmp_path / "post.py").write_text("")
    (tmp_path / "pipelines" / "Here").mkdir(parents=True)
    (tmp_path / "pipelines" / "Here" / "real.py").write_text("")
    assert resolve_script(tmp_path, "scripts/analyze_results.py").kind == "analysis"
    assert resolve_script(tmp_path, "./scripts//analyze_results.py").kind == "analysis"
    assert resolve_script(tmp_path, "scripts/extract_units.py", run_step=True).kind == "extract"
    # an analysis script named as a run step (or the reverse) is not a built-in there
    assert resolve_script(tmp_path, "scripts/analyze_results.py", run_step=True).builtin is False
    ref = resolve_script(tmp_path, "pipelines/AnyName/post.py")
    assert (ref.kind, ref.relative, ref.via_convention) == ("folder", "post.py", True)
    # a path that exists as written inside the folder wins over the convention
    literal = resolve_script(tmp_path, "pipelines/Here/real.py")
    assert (literal.relative, literal.via_convention) == ("pipelines/Here/real.py", False)
    assert resolve_script(tmp_path, "tools/x.py").relative == "tools/x.py"
    assert resolve_script(tmp_path, "../x.py").relative is None
    assert resolve_script(tmp_path, "/etc/x.py").relative is None


@pytest.mark.parametrize(
    ("path", "folder", "problem"),
    [
        ("outputs/units", True, None),
        ("extracted", True, None),
        ("outputs", True, "whole outputs folder"),
        ("../elsewhere", True, "leaves the run folder"),
        ("/tmp/x", True, "leaves the run folder"),
        (".", True, "run folder itself"),
        ("config/units", True, "inside 'config'"),
        ("chunks", True, "inside 'chunks'"),
        (".hidden", True, "inside '.hidden'"),
        ("ledger.db", False, "inside 'ledger.db'"),
    ],
)
def test_where_a_run_may_write(path: str, folder: bool, problem: str | None) -> None:
    found = output_problem(path, folder=folder)
    assert (found is None) if problem is None else (problem in (found or "")), found


def test_npc_dialogs_own_script_is_found_by_the_pipelines_convention() -> None:
    pipeline = load_pipeline(demo("NPCDialog"))
    assert [p.level for p in pipeline.warnings] == []


def pipeline_with(tmp_path: Path, extra: str, files: dict[str, str] | None = None) -> Path:
    import shutil

    folder = tmp_path / "p"
    shutil.copytree(EXAMPLES / "random_walk", folder)
    for name, text in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    config = folder / "config.yaml"
    text = config.read_text()
    text = text[: text.index("post_process:")] + extra
    config.write_text(text)
    return folder


def problems(folder: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_pipeline(folder)
    return [(p.key_path, p.message) for p in info.value.problems]


def test_a_pipelines_path_to_a_file_that_is_not_in_the_folder(tmp_path: Path) -> None:
    folder = pipeline_with(
        tmp_path, "post_process:\n  - script: pipelines/Walk/missing.py\n    output: x.txt\n"
    )
    [(key, message)] = problems(folder)
    assert key == "post_process[0].script"
    assert "'pipelines/Walk/missing.py' does not exist" in message
    assert "looked for missing.py in this folder" in message


def test_another_octobatch_tool_is_not_provided(tmp_path: Path) -> None:
    folder = pipeline_with(tmp_path, "post_process:\n  - script: scripts/compare_hands.py\n")
    [(key, message)] = problems(folder)
    assert key == "post_process[0].script" and "analyze_results.py" in message


def test_a_script_outside_the_folder_or_linked_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.py"
    outside.write_text("print('no')")
    folder = pipeline_with(
        tmp_path,
        "post_process:\n  - script: ../secret.py\n  - script: pipelines/X/linked.py\n",
    )
    os.symlink(outside, folder / "linked.py")
    found = problems(folder)
    assert [k for k, _ in found] == ["post_process[0].script", "post_process[1].script"]
    assert "outside the pipeline folder" in found[0][1]
    assert "linked.py" in found[1][1] and str(outside) in found[1][1]


def test_bad_analysis_arguments_are_a_config_error(tmp_path: Path) -> None:
    folder = pipeline_with(
        tmp_path,
        "post_process:\n  - script: scripts/analyze_results.py\n"
        "    args: [--group-by, ending, --numeric-field, moves, --net-positive, home]\n"
        "  - script: scripts/analyze_results.py\n"
        "    args: [--group-by, ending, --numeric-field, moves, --custom-stat, 'X=moves +']\n"
        "  - script: scripts/analyze_results.py\n"
        "    args: [--group-by, ending, --count-field, ending, --output, ../../x.txt]\n",
    )
    found = problems(folder)
    assert [k for k, _ in found] == ["post_process[0].args"] * 1 + [
        "post_process[1].args",
        "post_process[2].args",
    ]
    assert "--net-positive and --net-negative can only be used with --count-field" in found[0][1]
    assert "--custom-stat X:" in found[1][1]
    assert "leaves the run's outputs folder" in found[2][1]


def test_outputs_and_globs_that_leave_the_run_folder(tmp_path: Path) -> None:
    folder = pipeline_with(
        tmp_path,
        "post_process:\n  - script: scripts/analyze_results.py\n"
        "    args: [--group-by, ending, --count-field, ending]\n    output: ../../x.txt\n"
        "  - type: gzip\n    files: ['../*.jsonl', 'outputs/*.jsonl']\n",
    )
    assert [k for k, _ in problems(folder)] == [
        "post_process[0].output",
        "post_process[1].files[0]",
    ]


RUN_STEP = "    - name: extract\n      scope: run\n"


def with_run_step(tmp_path: Path, keys: str) -> Path:
    folder = pipeline_with(tmp_path, "")
    config = folder / "config.yaml"
    text = config.read_text().replace(
        "    - name: report\n", RUN_STEP + keys + "    - name: report\n"
    )
    config.write_text(text)
    return folder


def test_a_cloud_upload_is_refused_by_name(tmp_path: Path) -> None:
    folder = with_run_step(
        tmp_path,
        "      script: scripts/extract_units.py\n"
        "      upload: {provider: google_drive, folder_id: abc, delete_local: true}\n",
    )
    [(key, message)] = problems(folder)
    assert key == "pipeline.steps[1].upload"
    assert "google_drive" in message and "uploads nothing" in message


@pytest.mark.parametrize(
    ("keys", "key", "text"),
    [
        ("      output_dir: ../out\n", "pipeline.steps[1].output_dir", "leaves the run folder"),
        ("      output_dir: outputs\n", "pipeline.steps[1].output_dir", "whole outputs folder"),
        (
            '      filename_expression: "unit_id"\n',
            "pipeline.steps[1].filename_expression",
            "see only 'data'",
        ),
        (
            '      content_expression: "data["\n',
            "pipeline.steps[1].content_expression",
            "bad expression",
        ),
        ("      description: nothing to do\n", "pipeline.steps[1]", "needs 'script'"),
    ],
)
def test_extraction_settings_are_checked(tmp_path: Path, keys: str, key: str, text: str) -> None:
    [(found_key, message)] = problems(with_run_step(tmp_path, keys))
    assert found_key == key and text in message, message


def test_a_valid_extraction_step_loads(tmp_path: Path) -> None:
    folder = with_run_step(
        tmp_path,
        "      output_dir: outputs/walks\n"
        "      filename_expression: \"data['unit_id']\"\n"
        "      content_expression: \"{'trail': data['trail']}\"\n"
        "      compression: gzip\n",
    )
    step = load_pipeline(folder).run_steps[0]
    assert step.output_dir == "outputs/walks" and step.compression == "gzip"


def test_a_custom_stat_reading_a_name_it_is_not_given_is_refused(tmp_path: Path) -> None:
    folder = pipeline_with(
        tmp_path,
        "post_process:\n  - script: scripts/analyze_results.py\n"
        "    args: [--group-by, ending, --numeric-field, moves, --custom-stat, 'PerMove=mean/moves']\n",
    )
    [(key, message)] = problems(folder)
    assert key == "post_process[0].args"
    assert "--custom-stat PerMove reads 'moves'" in message and "min_val" in message
