"""Post-processing of a pipeline someone else wrote: its scripts run only when the user allows
them by name, and then without secrets in their environment and within a time limit; nothing
a post-process or run-scope step names can reach outside the run folder or touch what octopipe
keeps there; the built-in analysis and extraction run no folder code at all."""

from __future__ import annotations

import gzip
import json
import sqlite3

import pytest

from support.hostile import Sandbox

ANALYSIS = (
    "  - name: Verdicts\n"
    "    script: scripts/analyze_results.py\n"
    "    args: [--group-by, name, --count-field, verdict]\n"
    "    output: verdicts.txt\n"
)


def _add_post(sandbox: Sandbox, entries: str) -> None:
    config = sandbox.pipeline / "config.yaml"
    config.write_text(config.read_text() + "\npost_process:\n" + entries)


def _add_run_step(sandbox: Sandbox, step: str) -> None:
    sandbox.edit_config('        doubled: "value * 2"\n', '        doubled: "value * 2"\n' + step)


def _plant_scripts(sandbox: Sandbox) -> None:
    marks = sandbox.code_that_marks()
    sandbox.write("evil.py", marks + "print('evil ran')\n")
    sandbox.write("tools/step.py", marks)
    _add_run_step(sandbox, "    - name: finish\n      scope: run\n      script: tools/step.py\n")
    _add_post(
        sandbox,
        ANALYSIS + "  - name: Evil\n    script: pipelines/Hostile/evil.py\n    output: evil.txt\n",
    )


@pytest.mark.parametrize("mode", ["--realtime", "--batch"])
def test_folder_scripts_never_run_unasked_and_the_built_ins_always_do(
    sandbox: Sandbox, mode: str
) -> None:
    _plant_scripts(sandbox)
    run = sandbox.octopipe(
        "run", sandbox.pipeline, mode, "--provider", "fake", "--poll-interval", "0.2", "--yes",
        "--run", "r", timeout=120,
    )  # fmt: skip
    post = sandbox.octopipe("post", "r", timeout=60)
    assert run.code == 0 and post.code == 0, (run, post)
    outputs = sandbox.runs / "r" / "outputs"
    assert (outputs / "verdicts.txt").read_text().startswith("\nResults Analysis\n")
    assert not (outputs / "evil.txt").exists()
    for result in (run, post):
        assert "Evil" in result.out and "skipped" in result.out, result
        assert "--allow-script Evil" in result.out, result
        assert "finish" in result.out, result
    sandbox.assert_contained(run, post)


def test_an_allowed_script_runs_without_the_secrets_of_the_environment(sandbox: Sandbox) -> None:
    sandbox.write(
        "dump.py",
        sandbox.code_that_marks()
        + "import json, os, sys\nprint(json.dumps(dict(os.environ)))\n"
        + "print(open(os.path.join(sys.argv[1], 'MANIFEST.json')).read()[:0])\n",
    )
    _add_post(sandbox, "  - name: Dump\n    script: dump.py\n    output: env.json\n")
    secrets = {
        "HOSTILE_API_KEY": sandbox.canary,
        "GITHUB_TOKEN": sandbox.canary,
        "SERVICE_SECRET": sandbox.canary,
        "DB_PASSWORD": sandbox.canary,
        "OCTOPIPE_EMULATOR_TOKEN": sandbox.canary,
        "KEPT_SETTING": "visible",
    }
    run = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "r",
        "--allow-script", "Dump", env=secrets, timeout=120,
    )  # fmt: skip
    assert run.code == 0, run
    seen = json.loads((sandbox.runs / "r" / "outputs" / "env.json").read_text().splitlines()[0])
    assert seen["KEPT_SETTING"] == "visible"
    assert not [k for k in secrets if k in seen and k != "KEPT_SETTING"], seen
    assert sandbox.leaks(run) == ["pipeline code ran"]  # it ran (allowed); nothing leaked


def test_an_allowed_script_that_never_ends_is_stopped_in_time(sandbox: Sandbox) -> None:
    sandbox.write("hang.py", "import time\nwhile True:\n    time.sleep(1)\n")
    _add_post(
        sandbox, "  - name: Hang\n    script: hang.py\n    timeout_seconds: 2\n    output: h.txt\n"
    )
    run = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "r", "--allow-scripts",
        timeout=90,
    )  # fmt: skip
    assert run.code == 0, run  # the run is complete; its post-processing failed
    assert "Hang" in run.out and "timed out after 2 s" in run.out, run
    assert run.seconds < 60
    sandbox.assert_contained(run)


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        ("  - {script: ../outside/x.py}\n", "post_process[0].script", "outside the pipeline"),
        ("  - {script: pipelines/X/../../../x.py}\n", "post_process[0].script", "outside"),
        (ANALYSIS.replace("verdicts.txt", "../../escape.txt"), "post_process[0].output", "leaves"),
        ("  - {type: gzip, files: ['../../*']}\n", "post_process[0].files[0]", "leaves the run"),
        ("  - {type: gzip, files: ['/etc/*']}\n", "post_process[0].files[0]", "leaves the run"),
        (
            "  - {script: scripts/analyze_results.py, args: [--group-by, name, --count-field, "
            "verdict, --output, /tmp/x.txt]}\n",
            "post_process[0].args",
            "leaves the run's outputs folder",
        ),
    ],
)
def test_paths_that_leave_the_run_folder_are_refused(
    sandbox: Sandbox, entry: str, key: str, message: str
) -> None:
    _add_post(sandbox, entry)
    validate = sandbox.octopipe("validate", sandbox.pipeline)
    run = sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "r")
    for result in (validate, run):
        assert result.code == 2, result
        assert key in result.err and message in result.err, result
    assert not (sandbox.runs / "r").exists()
    sandbox.assert_contained(validate, run)


def test_a_script_linked_outside_the_folder_is_refused(sandbox: Sandbox) -> None:
    evil = sandbox.outside / "evil.py"
    evil.write_text(sandbox.code_that_marks())
    sandbox.link("post.py", evil)
    _add_post(sandbox, "  - {script: pipelines/Hostile/post.py, output: p.txt}\n")
    result = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "r", "--allow-scripts"
    )
    assert result.code == 2, result
    assert "post_process[0].script" in result.err and str(evil) in result.err, result
    sandbox.assert_contained(result)


@pytest.mark.parametrize(
    ("step", "key", "message"),
    [
        ("      output_dir: config\n", "output_dir", "inside 'config'"),
        ("      output_dir: ../../outside\n", "output_dir", "leaves the run folder"),
        ("      output_dir: outputs\n", "output_dir", "whole outputs folder"),
        (
            "      upload: {provider: google_drive, folder_id: x, credentials_env: GDRIVE}\n",
            "upload",
            "uploads nothing",
        ),
        ("      filename_expression: \"open('/etc/passwd').read()\"\n", "filename_expression", ""),
    ],
)
def test_extraction_settings_that_would_escape_or_upload_are_refused(
    sandbox: Sandbox, step: str, key: str, message: str
) -> None:
    _add_run_step(
        sandbox,
        "    - name: files\n      scope: run\n      script: scripts/extract_units.py\n" + step,
    )
    result = sandbox.octopipe("validate", sandbox.pipeline)
    assert result.code == 2, result
    assert f"pipeline.steps[1].{key}" in result.err and message in result.err, result
    sandbox.assert_contained(result)


def test_gzip_cannot_touch_the_ledger_or_the_snapshot(sandbox: Sandbox) -> None:
    _add_post(sandbox, "  - {type: gzip, files: ['*', '*/*', 'ledger.db', 'config/*']}\n")
    run = sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "r")
    again = sandbox.octopipe("run", "r")  # the snapshot still matches its fingerprint
    status = sandbox.octopipe("status", "r", "--json")
    assert run.code == 0 and again.code == 0 and status.code == 0, (run, again, status)
    folder = sandbox.runs / "r"
    assert (folder / "ledger.db").is_file() and not (folder / "ledger.db.gz").exists()
    assert (folder / "config" / "config.yaml").is_file()
    assert not list((folder / "config").glob("*.gz"))
    # what it may compress, it did: the exports, and they follow the ledger compressed
    assert (folder / "outputs" / "judge_validated.jsonl.gz").is_file()
    lines = gzip.decompress((folder / "outputs" / "judge_validated.jsonl.gz").read_bytes())
    assert len(lines.splitlines()) == 3
    sandbox.assert_contained(run, again, status)


def test_extracted_file_names_stay_inside_their_folder(sandbox: Sandbox) -> None:
    _add_run_step(
        sandbox,
        "    - name: files\n      scope: run\n      script: scripts/extract_units.py\n"
        "      filename_expression: \"'../../../' + data['unit_id']\"\n",
    )
    run = sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "r")
    assert run.code == 0, run
    units = sandbox.runs / "r" / "outputs" / "units"
    assert sorted(p.name for p in units.iterdir()) == [
        ".._.._.._a.json", ".._.._.._b.json", ".._.._.._c.json"
    ]  # fmt: skip
    assert not list(sandbox.root.glob("*.json"))
    db = sqlite3.connect(sandbox.runs / "r" / "ledger.db")
    assert db.execute("SELECT outcome FROM post_runs").fetchall() == [("ok",)]
    sandbox.assert_contained(run)
