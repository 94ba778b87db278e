"""``octopipe models``: the registry as a table and as JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from octopipe.cli import cli
from octopipe.cli.output import run_guarded
from octopipe.core.registry import load_registry


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_guarded(cli, ["models", *args])
    out, err = capsys.readouterr()
    return code, out, err


def models_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, _ = run(capsys, "--json", *args)
    assert code == 0
    data: dict[str, Any] = json.loads(out)
    return data


def test_json_lists_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    data = models_json(capsys)
    registry = load_registry()
    assert data["default_provider"] == registry.default_provider
    providers = {p["provider"]: p for p in data["providers"]}
    assert list(providers) == list(registry.providers())
    assert [name for name, p in providers.items() if p["default"]] == [registry.default_provider]
    for name, provider in providers.items():
        assert provider["default_model"] == registry.default_model(name)
        defaults = [m["model"] for m in provider["models"] if m["default"]]
        expected = [] if provider["default_model"] is None else [provider["default_model"]]
        assert defaults == expected, name


def test_json_gives_realtime_and_batch_prices(capsys: pytest.CaptureFixture[str]) -> None:
    data = models_json(capsys, "--provider", "openai")
    [openai] = data["providers"]
    mini = next(m for m in openai["models"] if m["model"] == "gpt-4o-mini")
    prices = mini["prices_usd_per_mtok"]
    assert {k: prices["standard"][k] for k in ("input", "cached_input", "output")} == {
        "input": 0.15,
        "cached_input": 0.075,
        "output": 0.6,
    }
    assert prices["standard"]["source"] == "genai-prices:gpt-4o-mini"
    assert prices["batch"]["input"] == pytest.approx(0.075)
    assert prices["batch"]["output"] == pytest.approx(0.3)
    assert prices["flex"] is None  # gpt-4o-mini has no flex tier
    assert data["price_database"].startswith("genai-prices 0.2.3")
    current = next(m for m in openai["models"] if m["model"] == "gpt-6-luna")
    assert current["default"] is True
    assert current["prices_usd_per_mtok"]["flex"]["input"] == pytest.approx(0.05)
    assert mini["limits"]["rpm"] is not None
    assert openai["limits"]["batch_max_requests"] == 50_000
    assert openai["api_key_env"] == ["OPENAI_API_KEY"]


def test_json_shows_the_emulator_priced_as_its_vendor(capsys: pytest.CaptureFixture[str]) -> None:
    [fake] = models_json(capsys, "--provider", "fake")["providers"]
    assert fake["mirrors"] == ["openai", "anthropic", "gemini"]
    [row] = fake["models"]
    assert (row["model"], row["priced_as"], row["default"]) == ("gpt-6-luna", "openai", True)


def test_table_marks_defaults_and_shows_prices(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--provider", "gemini")
    assert code == 0
    default_row = next(line for line in out.splitlines() if line.startswith("gemini-3.8-flash "))
    assert "*" in default_row and "$0.75" in default_row and "$3.75" in default_row
    assert "genai-prices 0.2.3 (bundled data)" in out
    assert "gemini (default provider)" in out
    assert "anthropic:" not in out and "gpt-4o-mini" not in out


def test_table_says_when_nothing_is_priced(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--provider", "openai-compatible")
    assert code == 0
    assert "no priced models" in out


def test_unknown_provider_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--provider", "opneai")
    assert code == 2
    assert "unknown provider 'opneai'" in err and out == ""
