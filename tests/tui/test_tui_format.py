"""The dashboard's total cost, the run's model line and the API-key note, on values."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from octopipe.providers.catalog import catalog
from octopipe.tui.format import totals_cost_text
from octopipe.tui.port import environment_note
from octopipe.tui.screens.run_detail import model_text


def test_totals_cost_shows_the_known_part_and_how_many_runs_are_unpriced() -> None:
    assert totals_cost_text(0.0027, 0) == "$0.0027"
    assert totals_cost_text(0.0027, 3) == "$0.0027 + unknown (3 runs unpriced)"
    assert totals_cost_text(0.0, 1) == "$0.00 + unknown (1 run unpriced)"


def test_model_text_names_the_models_the_calls_used() -> None:
    view = SimpleNamespace(provider=None, model=None)
    report = SimpleNamespace(models=["fake/fake-small", "openai/gpt-4o-mini"])
    assert model_text(view, report) == "fake/fake-small, openai/gpt-4o-mini"
    assert model_text(view, None) == "the pipeline's provider/model (no call yet)"
    set_view = SimpleNamespace(provider="fake", model=None)
    assert model_text(set_view, SimpleNamespace(models=[])) == "fake/pipeline model"


def _all_key_variables() -> list[str]:
    specs = catalog()
    found = []
    for name in specs.names():
        spec = specs.get(name)
        found += list(spec.key_variables) if spec is not None else []
    return found


def test_environment_note_asks_the_catalog_for_key_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = _all_key_variables()
    assert "OPENAI_API_KEY" in variables
    for variable in variables:
        monkeypatch.delenv(variable, raising=False)
    assert environment_note() is not None and "fake" in str(environment_note())
    for variable in variables:
        monkeypatch.setenv(variable, "k")
        assert environment_note() is None
        monkeypatch.delenv(variable)
