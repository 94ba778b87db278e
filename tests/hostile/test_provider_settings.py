"""A pipeline folder's provider settings cannot make a run spend without the limits it
declares, nor leave a half-made run behind: a cost cap on a model with no known price, an
OpenAI-compatible provider with no server address and a nonsensical outage grace are refused
with a clear message before any run exists, in bounded time, with nothing leaked."""

from __future__ import annotations

from support.hostile import Sandbox


def _api(sandbox: Sandbox, lines: str) -> None:
    sandbox.edit_config("processing:", f"api:\n{lines}\nprocessing:")


def _no_runs(sandbox: Sandbox) -> bool:
    return not sandbox.runs.exists() or not any(sandbox.runs.iterdir())


def test_a_cost_cap_the_registry_cannot_price_is_refused(sandbox: Sandbox) -> None:
    _api(sandbox, "  model: house-model-7b\n  realtime:\n    cost_cap_usd: 0.01")
    ran = sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", timeout=60)
    assert ran.code == 2, ran
    assert (
        "--max-cost $0.01 cannot be held: step 'judge' uses fake/house-model-7b, which has no "
        "known realtime price"
    ) in ran.err.replace("\n", " ")
    assert ran.seconds < 30
    assert _no_runs(sandbox)
    sandbox.assert_contained(ran)


def test_an_openai_compatible_provider_without_a_server_is_refused(sandbox: Sandbox) -> None:
    _api(sandbox, "  provider: openai-compatible\n  model: local-model")
    ran = sandbox.octopipe("run", sandbox.pipeline, "--yes", timeout=60)
    assert ran.code == 2, ran
    assert "step 'judge' uses provider 'openai-compatible', which needs the server's address" in (
        ran.err
    )
    assert _no_runs(sandbox)
    sandbox.assert_contained(ran)


def test_an_outage_grace_that_is_not_a_positive_number_is_a_config_error(
    sandbox: Sandbox,
) -> None:
    _api(sandbox, "  realtime:\n    pause_after_outage_seconds: .nan")
    checked = sandbox.octopipe("validate", sandbox.pipeline, timeout=60)
    ran = sandbox.octopipe("run", sandbox.pipeline, "--provider", "fake", "--yes", timeout=60)
    for result in (checked, ran):
        assert result.code == 2, result
        assert "[api.realtime.pause_after_outage_seconds]" in result.text, result
    assert _no_runs(sandbox)
    sandbox.assert_contained(checked, ran)
