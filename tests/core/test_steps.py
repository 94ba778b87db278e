"""One unit through one step: deltas, failures by stage, and nothing raised for a unit."""

from __future__ import annotations

import json

from octopipe.core.config import load_pipeline
from octopipe.core.steps import CompiledPipeline
from octopipe.core.units import iter_units
from support.paths import EXAMPLES


def first_unit(name: str):
    pipeline = load_pipeline(EXAMPLES / name)
    unit = next(iter(iter_units(pipeline.config.processing, pipeline.items_path)))
    return pipeline, CompiledPipeline(pipeline), unit


def test_random_walk_ends_at_an_edge_and_answer_is_checked_against_it() -> None:
    _, compiled, unit = first_unit("random_walk")
    walk, report = compiled.steps
    result = walk.run_expression(unit.id, unit.fields)
    assert result.ok and result.delta is not None
    assert result.delta["square"] in (0, 10)
    assert result.delta["moves"] == len(result.delta["trail"]) - 1
    record = {**unit.fields, **result.delta}
    good = {
        "end_square": record["square"],
        "move_count": record["moves"],
        "ending": "home" if record["square"] == 10 else "lost",
    }
    ok = report.check_answer(json.dumps(good), record)
    assert ok.ok and ok.delta == good
    bad = {**good, "move_count": str(record["moves"] + 1)}  # coerced, then wrong
    failed = report.check_answer(json.dumps(bad), record)
    assert failed.failure is not None and failed.failure.stage == "rules"
    assert failed.failure.retryable
    assert "moves" in failed.failure.message


def test_same_unit_same_walk_across_compilations() -> None:
    _, compiled_a, unit = first_unit("random_walk")
    _, compiled_b, _ = first_unit("random_walk")
    a = compiled_a.steps[0].run_expression(unit.id, unit.fields)
    b = compiled_b.steps[0].run_expression(unit.id, unit.fields)
    assert a.delta == b.delta


def test_expression_step_rules_fail_deterministically_and_are_not_retryable() -> None:
    _, compiled, unit = first_unit("card_game")
    deal, _play, check_play, _ = compiled.steps
    dealt = deal.run_expression(unit.id, unit.fields).delta
    assert dealt is not None and len(dealt["opening"]) == 2 and len(dealt["draw_pile"]) == 6
    record = {
        **unit.fields,
        **dealt,
        "cards_drawn": 0,
        "busted": False,
        "final_total": sum(dealt["opening"]) + 1,
    }
    result = check_play.run_expression(unit.id, record)
    assert result.failure is not None
    assert result.failure.stage == "rules" and not result.failure.retryable
    right = {**record, "final_total": sum(dealt["opening"])}
    assert check_play.run_expression(unit.id, right).ok


def test_render_failure_is_a_unit_failure_not_an_exception() -> None:
    _, compiled, unit = first_unit("random_walk")
    failure = compiled.steps[1].try_render(unit.id, unit.fields)  # no walk fields yet
    assert not isinstance(failure, str)
    assert failure.stage == "render"
    assert "trail" in failure.message


def test_expression_error_names_variable() -> None:
    _, compiled, unit = first_unit("random_walk")
    result = compiled.steps[0].run_expression(unit.id, {**unit.fields, "start_square": "five"})
    assert result.failure is not None and result.failure.stage == "expression"
    assert result.failure.errors[0]["variable"] in ("square", "trail")
