"""A pipeline folder's own code never runs unasked.

The folder here ships an ``emulator_answers.py`` (Octobatch's and our examples' name for an
emulator answer hook), a helper module, an executable shell script, a post-process script and a
run-scope step script, each of which leaves the sandbox's marker behind if it ever runs.
Rehearsing (``run --provider fake``, realtime and batch, new run or resumed), ``validate``,
``init`` and ``try`` run none of it; ``validate`` lists every one of them. Only
``--answers FILE`` runs a hook, and a run started with one does not silently change answers on
resume.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from support.hostile import Result, Sandbox

HOOK = "emulator_answers.py"


def _plant_code(sandbox: Sandbox) -> None:
    marks = sandbox.code_that_marks()
    sandbox.write(HOOK, marks + "def answer(request):\n    return {'verdict': 'hooked'}\n")
    sandbox.write("lib/helpers.py", marks)
    shell = sandbox.write("tools/setup", f"#!/bin/sh\necho ran > {sandbox.marker}\n")
    shell.chmod(0o755)
    sandbox.write("scripts/post.py", marks)
    sandbox.write("scripts/finish.py", marks)
    sandbox.edit_config(
        '        doubled: "value * 2"\n',
        '        doubled: "value * 2"\n'
        "    - name: finish\n"
        "      scope: run\n"
        "      script: scripts/finish.py\n",
    )
    config = sandbox.pipeline / "config.yaml"
    config.write_text(
        config.read_text() + "\npost_process:\n  - type: script\n    script: scripts/post.py\n"
    )


CODE_FILES = {
    "emulator_answers.py",
    "lib/helpers.py",
    "tools/setup",
    "scripts/post.py",
    "scripts/finish.py",
}


def _exported_verdicts(sandbox: Sandbox, run: str) -> list[str]:
    path = sandbox.runs / run / "outputs" / "judge_validated.jsonl"
    return [json.loads(line)["verdict"] for line in path.read_text().splitlines()]


def _run_options(sandbox: Sandbox, run: str) -> dict[str, object]:
    db = sqlite3.connect(sandbox.runs / run / "ledger.db")
    try:
        return dict(json.loads(db.execute("SELECT options_json FROM run").fetchone()[0]))
    finally:
        db.close()


def _run_status(sandbox: Sandbox, run: str) -> str:
    db = sqlite3.connect(sandbox.runs / run / "ledger.db")
    try:
        return str(db.execute("SELECT status FROM run").fetchone()[0])
    finally:
        db.close()


# --- nothing runs unasked -------------------------------------------------------------------


def test_validate_lists_every_file_that_is_code_and_runs_none(sandbox: Sandbox) -> None:
    _plant_code(sandbox)
    text = sandbox.octopipe("validate", sandbox.pipeline)
    as_json = sandbox.octopipe("validate", sandbox.pipeline, "--json")

    assert text.code == 0, text
    assert "carries code" in text.out, text
    assert "none of it runs unless you ask for it by name" in text.out, text
    for relative in CODE_FILES:
        assert relative in text.out, (relative, text)
    assert "post_process[0].script" in text.out, text
    assert "pipeline.steps[1].script" in text.out, text
    assert "--answers" in text.out, text
    listing = text.out.split("carries code")[1].splitlines()[1:]
    assert not [line for line in listing if line.split()[0] == "config.yaml"], text
    assert as_json.code == 0, as_json
    listed = {entry["path"]: entry for entry in json.loads(as_json.out)["code"]}
    assert set(listed) == CODE_FILES, listed
    assert listed["scripts/post.py"]["named_by"] == "post_process[0].script"
    assert listed["tools/setup"]["named_by"] is None
    sandbox.assert_contained(text, as_json)


def test_validate_lists_the_code_of_a_folder_whose_config_is_broken(sandbox: Sandbox) -> None:
    _plant_code(sandbox)
    sandbox.edit_config("strategy: direct", "strategy: directt")
    result = sandbox.octopipe("validate", sandbox.pipeline)

    assert result.code == 2, result
    assert "processing.strategy" in result.err, result
    for relative in ("emulator_answers.py", "lib/helpers.py", "tools/setup"):
        assert relative in result.text, (relative, result)
    sandbox.assert_contained(result)


REHEARSALS = {
    "run realtime": ("run", "{pipeline}", "--provider", "fake", "--yes", "--run", "r"),
    "run batch": (
        "run",
        "{pipeline}",
        "--batch",
        "--provider",
        "fake",
        "--poll-interval",
        "0.2",
        "--yes",
        "--run",
        "b",
    ),
    "run fake:anthropic": (
        "run",
        "{pipeline}",
        "--provider",
        "fake:anthropic",
        "--yes",
        "--run",
        "a",
    ),
    "validate": ("validate", "{pipeline}"),
    "init": ("init", "{pipeline}", "--provider", "fake", "--run", "i"),
    "try": ("try", "{pipeline}", "--unit", "a"),
    "try with a response": ("try", "{pipeline}", "--unit", "a", "--response", "{answer}"),
    "units": ("units", "{pipeline}"),
}


@pytest.mark.parametrize("command", list(REHEARSALS))
def test_no_command_runs_the_folders_code_unasked(sandbox: Sandbox, command: str) -> None:
    _plant_code(sandbox)
    answer = sandbox.work / "answer.json"
    answer.write_text('{"verdict": "fine"}')
    args = [a.format(pipeline=sandbox.pipeline, answer=answer) for a in REHEARSALS[command]]
    result = sandbox.octopipe(*args, timeout=90)

    assert result.code == 0, result
    assert not sandbox.marker.exists(), result
    if command.startswith("run"):
        hint = f"add --answers {sandbox.pipeline / HOOK} (its code then runs)"
        assert hint in result.out, result
        run = args[-1]
        verdicts = _exported_verdicts(sandbox, run)
        assert len(verdicts) == 3 and "hooked" not in verdicts, result
        assert _run_options(sandbox, run).get("answers") is None
    sandbox.assert_contained(result)


@pytest.mark.parametrize("mode", ["--realtime", "--batch"])
def test_resuming_a_fake_run_does_not_pick_up_the_snapshots_hook(
    sandbox: Sandbox, mode: str
) -> None:
    """A run created from the folder and then driven (as `octopipe run NAME`) still runs no
    code: neither the folder's hook nor any copy of it in the run's snapshot."""
    _plant_code(sandbox)
    created = sandbox.octopipe("init", sandbox.pipeline, "--provider", "fake", "--run", "x")
    resumed = sandbox.octopipe("run", "x", mode, "--poll-interval", "0.2", "--yes", timeout=90)

    assert created.code == 0, created
    assert resumed.code == 0, resumed
    assert not sandbox.marker.exists(), resumed
    assert not (sandbox.runs / "x" / "config" / HOOK).exists()
    assert "hooked" not in _exported_verdicts(sandbox, "x")
    sandbox.assert_contained(created, resumed)


# --- the opt-in works --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["--realtime", "--batch"])
def test_answers_flag_runs_the_named_hook(sandbox: Sandbox, mode: str) -> None:
    _plant_code(sandbox)
    hook = sandbox.pipeline / HOOK
    result = sandbox.octopipe(
        "run",
        sandbox.pipeline,
        mode,
        "--provider",
        "fake",
        "--answers",
        hook,
        "--poll-interval",
        "0.2",
        "--yes",
        "--run",
        "h",
        timeout=90,
    )

    assert result.code == 0, result
    assert sandbox.marker.read_text() == "ran"  # the hook's module body ran: it was asked for
    assert _exported_verdicts(sandbox, "h") == ["hooked"] * 3
    assert f"emulator answers from {hook}" in result.text, result
    assert _run_options(sandbox, "h")["answers"] == str(hook)


def test_answers_flag_falls_back_to_generic_answers_when_the_hook_returns_none(
    sandbox: Sandbox,
) -> None:
    hook = sandbox.work / "my_answers.py"
    hook.write_text("def answer(request):\n    return None\n")
    result = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--answers", hook, "--yes", "--run", "n"
    )

    assert result.code == 0, result
    assert len(_exported_verdicts(sandbox, "n")) == 3
    sandbox.assert_contained(result)


def _hook_counting_calls(sandbox: Sandbox) -> Path:
    """A hook that appends a line to ``calls`` for each answer it gives."""
    calls = sandbox.root / "calls"
    return sandbox.write(
        "counting_answers.py",
        "def answer(request):\n"
        f"    with open({str(calls)!r}, 'a') as f:\n"
        "        f.write('call\\n')\n"
        "    return {'verdict': 'counted'}\n",
    )


def _calls(sandbox: Sandbox) -> int:
    calls = sandbox.root / "calls"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def _paused_run_with_answers(sandbox: Sandbox, hook: Path) -> Result:
    started = sandbox.octopipe(
        "run",
        sandbox.pipeline,
        "--provider",
        "fake",
        "--answers",
        hook,
        "--concurrency",
        "1",
        "--max-cost",
        "0.000001",
        "--yes",
        "--run",
        "p",
    )
    assert started.code == 1, started  # paused on its cost cap with units left
    assert f"resume with `octopipe run p --answers {hook}`" in started.text, started
    assert 1 <= _calls(sandbox) < 3
    return started


def test_resuming_a_run_started_with_answers_asks_for_them_again(sandbox: Sandbox) -> None:
    hook = _hook_counting_calls(sandbox)
    started = _paused_run_with_answers(sandbox, hook)
    before = _calls(sandbox)

    refused = sandbox.octopipe("run", "p", "--max-cost", "10", "--yes")

    assert refused.code == 2, refused
    assert f"run 'p' was started with --answers {hook}" in refused.err, refused
    assert f"octopipe run p --answers {hook}" in refused.err, refused
    assert "--generic-answers" in refused.err, refused
    assert _calls(sandbox) == before  # nothing ran, nothing was answered

    resumed = sandbox.octopipe("run", "p", "--answers", hook, "--max-cost", "10", "--yes")
    assert resumed.code == 0, resumed
    assert _exported_verdicts(sandbox, "p") == ["counted"] * 3
    sandbox.assert_contained(started, refused, resumed)


def test_generic_answers_resumes_a_run_started_with_answers_without_its_code(
    sandbox: Sandbox,
) -> None:
    hook = _hook_counting_calls(sandbox)
    _paused_run_with_answers(sandbox, hook)
    before = _calls(sandbox)

    resumed = sandbox.octopipe("run", "p", "--generic-answers", "--max-cost", "10", "--yes")

    assert resumed.code == 0, resumed
    assert _calls(sandbox) == before
    assert "generic" in resumed.text, resumed
    verdicts = _exported_verdicts(sandbox, "p")
    assert verdicts.count("counted") == before and len(verdicts) == 3
    assert _run_options(sandbox, "p")["answers"] is None
    # recorded: a later resume does not ask again
    again = sandbox.octopipe("run", "p", "--yes")
    assert again.code == 0, again


def test_watch_resuming_a_died_run_started_with_answers_asks_for_them(
    sandbox: Sandbox,
) -> None:
    hook = _hook_counting_calls(sandbox)
    _paused_run_with_answers(sandbox, hook)
    db = sqlite3.connect(sandbox.runs / "p" / "ledger.db")
    with db:
        db.execute("UPDATE run SET status = 'running'")  # its runner died mid-run
    db.close()
    before = _calls(sandbox)

    watched = sandbox.octopipe("watch", "p")

    assert watched.code == 2, watched
    assert f"octopipe run p --answers {hook}" in watched.err, watched
    assert _calls(sandbox) == before


# --- bad flags are refused before anything is created --------------------------------------


def _no_runs(sandbox: Sandbox) -> bool:
    return not sandbox.runs.exists() or not any(sandbox.runs.iterdir())


@pytest.mark.parametrize(
    ("provider", "flags", "canary_emulator", "complaint"),
    [
        pytest.param("openai", (), False, "--answers only applies to --provider fake", id="real"),
        pytest.param(
            "fake", (), True, "octopipe emulator --answers", id="emulator-started-elsewhere"
        ),
        pytest.param(
            "fake",
            ("--generic-answers",),
            False,
            "--answers and --generic-answers",
            id="with-generic-answers",
        ),
    ],
)
def test_answers_where_they_cannot_apply_are_refused_before_a_run_exists(
    sandbox: Sandbox,
    provider: str,
    flags: tuple[str, ...],
    canary_emulator: bool,
    complaint: str,
) -> None:
    """--answers with a real provider, with an emulator this command did not start, or with
    --generic-answers: exit 2 naming the clash, no run, nothing leaked."""
    _plant_code(sandbox)
    env = {"OCTOPIPE_EMULATOR_URL": sandbox.canary_server.url} if canary_emulator else None
    result = sandbox.octopipe(
        "run",
        sandbox.pipeline,
        "--provider",
        provider,
        "--answers",
        sandbox.pipeline / HOOK,
        *flags,
        "--yes",
        env=env,
    )

    assert result.code == 2, result
    assert complaint in result.err, result
    assert _no_runs(sandbox)
    sandbox.assert_contained(result)


def test_an_answers_file_without_an_answer_function_is_refused(sandbox: Sandbox) -> None:
    hook = sandbox.write("not_a_hook.py", "x = 1\n")
    result = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--answers", hook, "--yes", "--run", "q"
    )

    assert result.code == 2, result
    assert f"{hook}: defines no answer(request) function" in result.err, result
    assert _no_runs(sandbox)  # refused before the run was created
    sandbox.assert_contained(result)


@pytest.mark.parametrize("name", ["fakeXYZ", "fake:", "fake:mistral", "foo", "FAKE"])
@pytest.mark.parametrize("command", ["run", "init"])
def test_an_unknown_provider_name_is_refused(sandbox: Sandbox, name: str, command: str) -> None:
    extra = ("--yes",) if command == "run" else ()
    result = sandbox.octopipe(command, sandbox.pipeline, "--provider", name, *extra)

    assert result.code == 2, result
    assert f"unknown provider {name!r}" in result.err, result
    assert (
        "openai, anthropic, gemini, openai-compatible, fake, fake:openai, fake:anthropic, "
        "fake:gemini" in result.err
    ), result
    assert _no_runs(sandbox)
    sandbox.assert_contained(result)


def test_an_unknown_provider_name_is_refused_on_resume(sandbox: Sandbox) -> None:
    created = sandbox.octopipe("init", sandbox.pipeline, "--provider", "fake", "--run", "u")
    result = sandbox.octopipe("run", "u", "--provider", "fakeXYZ", "--yes")

    assert created.code == 0, created
    assert result.code == 2, result
    assert "unknown provider 'fakeXYZ'" in result.err, result
    sandbox.assert_contained(created, result)


def test_a_detached_run_keeps_the_answers_it_was_started_with(sandbox: Sandbox) -> None:
    hook = _hook_counting_calls(sandbox)
    started = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--answers", hook, "--detach", "--yes",
        "--run", "d",
    )  # fmt: skip
    assert started.code == 0, started
    deadline = time.monotonic() + 60
    while _run_status(sandbox, "d") != "complete":
        assert time.monotonic() < deadline, (sandbox.runs / "d" / "runner.out").read_text()
        time.sleep(0.2)

    assert _exported_verdicts(sandbox, "d") == ["counted"] * 3
    assert _calls(sandbox) == 3
