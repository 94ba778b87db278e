"""kill -9 a batch run at seeded instants, including right after submit and during collection,
resume each time (SPEC §9): no duplicate batch at the provider, every unit terminal exactly
once, cost equal to the provider's usage at batch prices. The full schedule (5,000 units, 30
kills) is ``bench/batch_crash_harness.py``."""

from __future__ import annotations

import json
from pathlib import Path

from support.batch_crash import BatchHarness


def test_seeded_kill_schedule_of_a_batch_run(tmp_path: Path) -> None:
    harness = BatchHarness(
        tmp_path, units=600, kills=8, seed=5, batch_delay_s=1.0, chunk=100, max_window_s=3.0
    )
    result = harness.run()
    summary = result.summary()
    assert result.ok, json.dumps(summary, indent=1)
    landed = {k.kind for k in result.kills if k.killed}
    assert {"after_submit", "mid_collect"} <= landed, summary
    assert result.batches_created == sum(
        n for state, n in result.ledger_batches.items() if state != "abandoned"
    )
    assert result.cost_usd > 0


def test_seeded_kill_schedule_with_cut_downloads(tmp_path: Path) -> None:
    """The same, while a fifth of the results downloads arrive cut: a kill can land between a
    cut download and the next, and still no unit is answered twice, no cost is lost."""
    harness = BatchHarness(
        tmp_path,
        units=400,
        kills=5,
        seed=11,
        batch_delay_s=1.0,
        chunk=50,
        max_window_s=3.0,
        truncate_rate=0.2,
    )
    result = harness.run()
    summary = result.summary()
    assert result.ok, json.dumps(summary, indent=1)
    assert result.downloads_cut >= 2, summary
    assert result.batches_created == sum(
        n for state, n in result.ledger_batches.items() if state != "abandoned"
    )
