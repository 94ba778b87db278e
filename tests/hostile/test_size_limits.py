"""Sizes a pipeline folder or a command line can ask for are bounded: too many units, an
absurd repeat, a huge config are refused with a clear message before anything is created,
and the limits can be raised on purpose through the environment."""

from __future__ import annotations

import pytest

from support.hostile import Result, Sandbox

HUGE = 10**23
UNIT_LIMIT = "10,000,000"


def assert_refused_cleanly(sandbox: Sandbox, result: Result, *needles: str) -> None:
    assert result.code == 2, result
    for needle in needles:
        assert needle in result.err, result
    assert "Traceback" not in result.text, result
    assert result.seconds < 20, result
    assert not sandbox.runs.exists() or not any(sandbox.runs.iterdir()), list(
        sandbox.runs.iterdir()
    )


@pytest.mark.parametrize("flag", ["--repeat", "--max-units"])
@pytest.mark.parametrize("command", ["validate", "init", "run", "units"])
def test_an_absurd_unit_count_on_the_command_line_is_refused(
    sandbox: Sandbox, command: str, flag: str
) -> None:
    args: list[object] = [command, sandbox.pipeline, flag, HUGE]
    if command == "run":
        args += ["--provider", "fake", "--yes"]
    result = sandbox.octopipe(*args, timeout=30)
    assert_refused_cleanly(
        sandbox,
        result,
        f"Invalid value for '{flag}'",
        f"{HUGE:,} is more than {UNIT_LIMIT}, the most units a run may have "
        "(set OCTOPIPE_MAX_UNITS to raise the limit)",
    )


def test_an_absurd_repeat_in_the_config_is_refused_before_anything_is_made(
    sandbox: Sandbox,
) -> None:
    sandbox.edit_config("  chunk_size: 10\n", f"  chunk_size: 10\n  repeat: {HUGE}\n")
    message = (
        f"the pipeline makes {3 * HUGE:,} units (3 base units x repeat {HUGE:,}), more than "
        f"the limit of {UNIT_LIMIT} (set OCTOPIPE_MAX_UNITS to raise it, or take the first N "
        "with --max-units)"
    )
    validated = sandbox.octopipe("validate", sandbox.pipeline, timeout=30)
    assert_refused_cleanly(sandbox, validated, "config.yaml:18 [processing.repeat]", message)
    tried = sandbox.octopipe("try", sandbox.pipeline, "--unit", "nobody", timeout=30)
    assert_refused_cleanly(sandbox, tried, message)
    listed = sandbox.octopipe("units", sandbox.pipeline, timeout=30)
    assert_refused_cleanly(sandbox, listed, message)
    assert listed.out == ""
    sampled = sandbox.octopipe("units", sandbox.pipeline, "--max-units", 2, timeout=30)
    assert sampled.code == 0, sampled
    assert len(sampled.out.splitlines()) == 2
    sandbox.assert_contained(validated, tried, listed, sampled)


def test_the_unit_limit_is_checked_before_a_run_is_created(sandbox: Sandbox) -> None:
    sandbox.edit_config("  chunk_size: 10\n", "  chunk_size: 10\n  repeat: 5000\n")
    env = {"OCTOPIPE_MAX_UNITS": "1000"}
    ran = sandbox.octopipe(
        "run", sandbox.pipeline, "--provider", "fake", "--yes", "--run", "big", env=env
    )
    assert_refused_cleanly(
        sandbox, ran, "the pipeline makes 15,000 units (3 base units x repeat 5,000)"
    )
    assert not (sandbox.runs / "big").exists()


def test_the_unit_limit_can_be_raised(sandbox: Sandbox) -> None:
    sandbox.edit_config("  chunk_size: 10\n", "  chunk_size: 10\n  repeat: 5\n")
    refused = sandbox.octopipe("validate", sandbox.pipeline, env={"OCTOPIPE_MAX_UNITS": "14"})
    allowed = sandbox.octopipe("validate", sandbox.pipeline, env={"OCTOPIPE_MAX_UNITS": "15"})
    assert refused.code == 2, refused
    assert "more than the limit of 14" in refused.err, refused
    assert allowed.code == 0, allowed
    assert "15 units" in allowed.out, allowed


def test_a_huge_config_is_refused_quickly(sandbox: Sandbox) -> None:
    config = sandbox.pipeline / "config.yaml"
    padding = ("# " + "x" * 97 + "\n") * 50_000  # 5 MB of comments
    config.write_text(config.read_text() + padding)
    result = sandbox.octopipe("validate", sandbox.pipeline, timeout=30)
    assert_refused_cleanly(
        sandbox,
        result,
        "config.yaml: the file is 5.0 MB, more than the 4.0 MB limit for pipeline files "
        "(set OCTOPIPE_MAX_CONFIG_BYTES to raise it)",
    )
    assert result.seconds < 5, result
    raised = sandbox.octopipe(
        "validate", sandbox.pipeline, env={"OCTOPIPE_MAX_CONFIG_BYTES": "6000000"}, timeout=60
    )
    assert raised.code == 0, raised


def test_a_huge_schema_or_template_is_refused(sandbox: Sandbox) -> None:
    sandbox.write("templates/judge.jinja2", "{{ value }}\n" + "{# padding #}\n" * 400_000)
    result = sandbox.octopipe("validate", sandbox.pipeline, timeout=30)
    assert_refused_cleanly(
        sandbox, result, "judge.jinja2: the file is 5.6 MB, more than the 4.0 MB limit"
    )


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1e9", "10**30"])
def test_a_bad_limit_in_the_environment_is_a_clear_error(sandbox: Sandbox, value: str) -> None:
    result = sandbox.octopipe("validate", sandbox.pipeline, env={"OCTOPIPE_MAX_UNITS": value})
    assert_refused_cleanly(
        sandbox,
        result,
        f"OCTOPIPE_MAX_UNITS must be a whole number from 1 to 1,000,000,000,000, not {value!r}",
    )
