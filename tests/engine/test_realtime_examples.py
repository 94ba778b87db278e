"""The three examples, run to completion in realtime through each vendor's SDK (emulated), with
their outputs checked for correctness -- not only that the run finished."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from octopipe.core.states import UnitStepState
from octopipe.emulator import EmulatorConfig
from octopipe.engine.paths import RunPaths
from octopipe.engine.realtime import RealtimeOptions
from octopipe.store.ledger import Ledger
from support.realtime import (
    EXAMPLES,
    VENDOR_MODELS,
    VENDORS,
    card_answer,
    card_strategy_draws,
    card_verdict,
    check_ledger,
    drive,
    make_run,
    step_states,
)


def _options(vendor: str) -> RealtimeOptions:
    return RealtimeOptions(provider=f"fake:{vendor}", model=VENDOR_MODELS[vendor])


def _hook(example: str) -> Path:
    return EXAMPLES / example / "emulator_answers.py"


def _exported(paths: RunPaths, name: str) -> list[dict[str, Any]]:
    text = (paths.root / "outputs" / name).read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("vendor", VENDORS)
def test_random_walk_reports_the_walk_it_was_given(vendor: str, tmp_path: Path) -> None:
    """The example's own answer hook, named as ``--answers`` names it (it now and then
    miscounts, so rules catch it and the unit is retried): every exported record reports the
    square the walk really ended on."""
    paths = make_run(EXAMPLES / "random_walk", tmp_path, repeat=12)
    result = drive(paths, _options(vendor), answers=_hook("random_walk"))

    assert result.outcome.status.value == "complete"
    check_ledger(paths)
    records = _exported(paths, "report_validated.jsonl")
    states = step_states(paths, "report")
    assert len(records) == list(states.values()).count(UnitStepState.VALID) >= 10
    for record in records:
        assert record["end_square"] == record["square"] == record["trail"][-1]
        assert record["ending"] == ("home" if record["square"] >= 10 else "lost")
        assert record["move_count"] == record["moves"] == len(record["trail"]) - 1
    # every call went through that vendor's wire format
    assert {endpoint.split(".")[0] for endpoint in result.stats["requests"]} == {vendor}


@pytest.mark.parametrize("vendor", VENDORS)
def test_card_game_checks_pass_right_plays_and_fail_wrong_ones(vendor: str, tmp_path: Path) -> None:
    """A deterministic player answers right for some hands, miscounts others and breaks the
    strategy on others: exactly the miscounts fail ``check_play`` and exactly the broken
    strategies fail ``check_strategy``."""
    paths = make_run(EXAMPLES / "card_game", tmp_path, repeat=5)  # 3 strategies x 5
    result = drive(paths, _options(vendor), EmulatorConfig(answer_fn=card_answer))

    assert result.outcome.status.value == "complete"
    check_ledger(paths)
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        dealt = dict(ledger.iter_valid(0))
    finally:
        ledger.close()
    assert len(dealt) == 15
    verdicts = {
        unit_id: card_verdict(r["opening"], r["draw_pile"], r["stop_at"])
        for unit_id, r in dealt.items()
    }
    assert set(verdicts.values()) == {"right", "miscount", "overdraw"}, verdicts  # all kinds met

    play = step_states(paths, "play")
    check_play = step_states(paths, "check_play")
    check_strategy = step_states(paths, "check_strategy")
    assert set(play.values()) == {UnitStepState.VALID}  # the answers themselves are well formed
    for unit_id, verdict in verdicts.items():
        if verdict == "miscount":
            assert check_play[unit_id] is UnitStepState.EXHAUSTED, unit_id
            assert unit_id not in check_strategy
        elif verdict == "overdraw":
            assert check_play[unit_id] is UnitStepState.VALID, unit_id
            assert check_strategy[unit_id] is UnitStepState.EXHAUSTED, unit_id
        else:
            assert check_strategy[unit_id] is UnitStepState.VALID, unit_id

    failures = {r["unit_id"]: r for r in _exported(paths, "check_play_failures.jsonl")}
    assert set(failures) == {u for u, v in verdicts.items() if v == "miscount"}
    strategy_failures = _exported(paths, "check_strategy_failures.jsonl")
    assert {r["unit_id"] for r in strategy_failures} == {
        u for u, v in verdicts.items() if v == "overdraw"
    }
    for record in _exported(paths, "check_strategy_validated.jsonl"):
        drawn = card_strategy_draws(record["opening"], record["draw_pile"], record["stop_at"])
        assert record["cards_drawn"] == drawn == record["expected_draws"]
        assert record["final_total"] == record["true_total"]
        assert record["busted"] == (record["true_total"] > 19)


@pytest.mark.parametrize("vendor", VENDORS)
def test_persona_panel_keeps_only_well_judged_messages(vendor: str, tmp_path: Path) -> None:
    """The example's hook (named as ``--answers`` names it) scores some messages under 0.6;
    those are sent back for another attempt. Every valid judgement has both scores at 0.6 or
    above."""
    paths = make_run(EXAMPLES / "persona_panel", tmp_path, max_units=8)
    result = drive(paths, _options(vendor), answers=_hook("persona_panel"))

    assert result.outcome.status.value == "complete"
    check_ledger(paths)
    judged = _exported(paths, "judge_validated.jsonl")
    assert judged, "no unit got through the judge"
    for record in judged:
        assert record["persona_fit"] >= 0.6 and record["mood_fit"] >= 0.6, record
        assert 8 <= len(record["message"].split()) <= 80
        assert record["tone"] in ("warm", "neutral", "sharp")
    written = step_states(paths, "write")
    judged_states = step_states(paths, "judge")
    assert len(written) == 8
    assert set(judged_states) == {u for u, s in written.items() if s is UnitStepState.VALID}
    assert set(judged_states.values()) <= {UnitStepState.VALID, UnitStepState.EXHAUSTED}
    valid = [u for u, s in judged_states.items() if s is UnitStepState.VALID]
    assert sorted(r["unit_id"] for r in judged) == sorted(valid)
