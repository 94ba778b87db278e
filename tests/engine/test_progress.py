"""RunStatusView.progress: done units / all units, whatever step they are at."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from octopipe.engine.queries import StepStatus, run_status
from support.admin import expression_pipeline, make_run


def test_progress_early_in_a_big_run_counts_every_unit(tmp_path: Path) -> None:
    view = run_status(make_run(expression_pipeline(tmp_path / "p"), tmp_path / "runs", "r"))
    early = dataclasses.replace(
        view,
        units=4000,
        steps=[
            StepStatus("first", "expression", pending=3000, valid=990, failed=10),
            StepStatus("last", "chunk", pending=900, in_flight=38, valid=52, failed=0),
        ],
    )
    # 52 valid at the end plus 10 that failed on the way, of 4,000 (was 52 of the 990 at the end)
    assert early.progress == (52 + 10) / 4000
    assert early.to_dict()["progress"] == round(62 / 4000, 4)


def test_a_finished_run_with_failures_is_at_100_percent(tmp_path: Path) -> None:
    failing = expression_pipeline(tmp_path / "f", n_items=9, inverse="10 // ((n + 1) % 3)")
    view = run_status(make_run(failing, tmp_path / "runs", "done"))
    assert (view.units, view.valid, view.failed) == (9, 6, 3)
    assert view.progress == 1.0
