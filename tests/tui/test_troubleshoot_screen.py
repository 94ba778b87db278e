"""T in the run detail: the troubleshoot answer from the emulator, with its cost."""

from __future__ import annotations

from support.tui import settle


async def test_t_shows_the_models_answer_and_its_cost(make_app, monkeypatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    app = make_app(start_run="judged")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert type(app.screen).__name__ == "ChoiceScreen"
        assert app.screen.choices == [c.label for c in app.queries.troubleshoot_models()]
        assert app.screen.choices[0].startswith("fake/gpt-6-luna ")  # nothing else configured
        await pilot.press("enter")
        for _ in range(50):
            await settle(pilot)
            if "cost" in app.screen.text.plain:
                break
        assert type(app.screen).__name__ == "TroubleshootScreen"
        first = app.screen.text.plain.splitlines()[0]
        assert first.startswith("fake/gpt-6-luna ") and " out; cost " in first
        assert len(app.screen.text.plain.splitlines()) > 2  # the answer follows


async def test_t_is_refused_in_read_only_mode(make_app) -> None:
    app = make_app(read_only=True, start_run="judged")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert type(app.screen).__name__ == "RunDetailScreen"


def test_the_picker_lists_configured_models_cheapest_first(runs, monkeypatch) -> None:
    from octopipe.tui.port import RunQueries

    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    queries = RunQueries(runs.dir)
    assert [c.provider for c in queries.troubleshoot_models()] == ["fake"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    choices = queries.troubleshoot_models()
    assert choices[-1].provider == "fake" and len(choices) > 2
    assert {c.provider for c in choices[:-1]} == {"openai"}
    from octopipe.core.registry import load_registry

    registry = load_registry()
    prices = []
    for choice in choices[:-1]:
        rates = registry.rates(choice.provider, choice.model, "standard")
        assert rates is not None
        prices.append((rates.base.output, rates.base.input))
    assert prices == sorted(prices)
    assert "per 1M tokens" in choices[0].label
