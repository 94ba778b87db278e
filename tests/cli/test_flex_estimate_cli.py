"""The estimate before a ``--flex`` run is priced at flex rates: each step's projected usage
times the price database's flex price (``calc_price`` with ``service_tier: flex``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from genai_prices import Usage as DbUsage
from genai_prices import calc_price

from octopipe.core.checker import check_pipeline
from octopipe.core.config import load_pipeline
from octopipe.engine.estimate import RunEstimate, estimate_pipeline
from support.cli import walk_copy

MODEL = "gpt-6-luna"


def _db_price(prompt_each: int, out_each: int, context: dict[str, str] | None) -> float:
    usage = DbUsage(input_tokens=prompt_each, output_tokens=out_each)
    return float(calc_price(usage, MODEL, provider_id="openai", price_context=context).total_price)


def _estimate(tmp_path: Path, flex: bool | None) -> tuple[RunEstimate, float]:
    pipeline = load_pipeline(walk_copy(tmp_path))
    report = check_pipeline(pipeline)
    estimate = estimate_pipeline(
        pipeline, report, "realtime", provider="openai", model=MODEL, flex=flex
    )
    return estimate, estimate.estimate.total_usd or 0.0


def test_a_flex_estimate_is_usage_times_the_flex_price(tmp_path: Path) -> None:
    estimate, total = _estimate(tmp_path, flex=True)
    lines = estimate.estimate.per_step
    assert lines and all(line.calls > 0 for line in lines)
    expected = sum(
        line.calls
        * _db_price(
            line.input_tokens // line.calls,
            line.output_tokens // line.calls,
            {"service_tier": "flex"},
        )
        for line in lines
    )
    assert total == pytest.approx(expected, rel=1e-9)
    standard = sum(
        line.calls
        * _db_price(line.input_tokens // line.calls, line.output_tokens // line.calls, None)
        for line in lines
    )
    assert total < standard  # flex is cheaper: the figure is not the standard one
    assert "realtime, flex prices" in estimate.lines()[-1]


def test_without_flex_the_estimate_stays_at_standard_prices(tmp_path: Path) -> None:
    _, flex_total = _estimate(tmp_path / "a", flex=True)
    standard_estimate, standard_total = _estimate(tmp_path / "b", flex=False)
    assert standard_total > flex_total > 0
    assert "flex" not in standard_estimate.lines()[-1]
