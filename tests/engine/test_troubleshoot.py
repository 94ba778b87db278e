"""Troubleshoot: one model call about a run's failures, against the in-process emulator."""

from __future__ import annotations

from pathlib import Path

from octopipe.core.registry import load_registry
from octopipe.engine.troubleshoot import cheapest_model, troubleshoot
from support.admin import fail_llm_units, llm_pipeline, make_run


def failed_run(tmp_path: Path):
    paths = make_run(llm_pipeline(tmp_path / "judged", n_items=4), tmp_path / "runs", "judged")
    fail_llm_units(paths, "judge", {"item000": '{"score": 2}', "item001": "not json at all"})
    return paths


def test_troubleshoot_sends_errors_samples_and_config_and_returns_the_answer(tmp_path) -> None:
    paths = failed_run(tmp_path)
    result = troubleshoot(paths, provider="fake", model="gpt-6-luna")
    assert result.provider == "fake" and result.model == "gpt-6-luna"
    assert "## step judge" in result.prompt
    assert "[rules] rules failure" in result.prompt  # the top error group with its count
    assert "sample item001 answered: not json at all" in result.prompt
    assert "# config" in result.prompt and "judge" in result.prompt.split("# config")[1]
    assert result.answer  # the emulator answered
    assert result.input_tokens > 0 and result.output_tokens > 0
    # the emulator bills nothing, but the call is priced as the mirrored vendor's model
    registry = load_registry()
    rates = registry.rates("fake", "gpt-6-luna", "standard")
    if rates is None:
        assert result.cost_usd is None and result.cost_text == "unknown"
    else:
        expected = (
            result.input_tokens * rates.base.input + result.output_tokens * rates.base.output
        ) / 1e6
        assert abs(result.cost_usd - expected) < 1e-9


def test_the_default_model_is_the_cheapest_of_the_configured_providers() -> None:
    registry = load_registry()
    provider, model = cheapest_model(("openai", "anthropic"))
    chosen = registry.rates(provider, model, "standard").base
    for name in ("openai", "anthropic"):
        for info in registry.models(name):
            rates = registry.rates(name, info.name, "standard")
            if rates is not None:
                assert (chosen.output, chosen.input) <= (rates.base.output, rates.base.input)


def test_with_no_key_set_the_default_is_the_emulator(tmp_path, monkeypatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = troubleshoot(failed_run(tmp_path))
    assert (result.provider, result.model) == ("fake", load_registry().default_model("fake"))
    assert result.answer
