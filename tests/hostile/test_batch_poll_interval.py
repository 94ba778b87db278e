"""A batch poll interval that would never poll (infinite, not a number, zero, negative, or
absurdly long) is refused with a clear message before any run exists -- on the command line
and in a pipeline's ``api.poll_interval_seconds`` alike. Before, ``--poll-interval inf``
created the run and then waited forever for a poll that never came."""

from __future__ import annotations

import pytest

from support.hostile import CONFIG, Sandbox

BAD_VALUES = ["inf", "nan", "0", "-5", "1e400", "90000"]


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_poll_interval_flag_that_never_polls_is_refused_before_the_run_exists(
    sandbox: Sandbox, value: str
) -> None:
    ran = sandbox.octopipe(
        "run",
        sandbox.pipeline,
        "--batch",
        "--provider",
        "fake",
        "--yes",
        "--run",
        "p",
        "--poll-interval",
        value,
        timeout=20,
    )

    assert ran.code == 2, ran
    assert "--poll-interval" in ran.err, ran
    assert "between" in ran.err and "86400" in ran.err, ran
    assert not (sandbox.runs / "p").exists()
    assert ran.seconds < 15
    sandbox.assert_contained(ran)


def test_a_sane_poll_interval_flag_still_runs(sandbox: Sandbox) -> None:
    ran = sandbox.octopipe(
        "run", sandbox.pipeline, "--batch", "--provider", "fake", "--yes", "--run", "ok",
        "--poll-interval", "0.2", timeout=60,
    )  # fmt: skip
    assert ran.code == 0, ran
    sandbox.assert_contained(ran)


@pytest.mark.parametrize("value", [".inf", ".nan", "0", "-1", "1.0e+9"])
def test_a_poll_interval_in_the_config_that_never_polls_is_refused(
    sandbox: Sandbox, value: str
) -> None:
    sandbox.write("config.yaml", CONFIG + f"\napi:\n  poll_interval_seconds: {value}\n")
    line = len(CONFIG.splitlines()) + 3

    validated = sandbox.octopipe("validate", sandbox.pipeline, timeout=20)
    ran = sandbox.octopipe(
        "run", sandbox.pipeline, "--batch", "--provider", "openai", "--yes", "--run", "p",
        timeout=20,
        # if anything were sent, it would reach the canary server, not a real provider
        env={"OPENAI_API_KEY": "sk-not-used", "OPENAI_BASE_URL": sandbox.canary_server.url},
    )  # fmt: skip

    for result in (validated, ran):
        assert result.code == 2, result
        assert f"config.yaml:{line} [api.poll_interval_seconds]" in result.text, result
    assert not (sandbox.runs / "p").exists()
    sandbox.assert_contained(validated, ran)
