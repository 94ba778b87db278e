"""``run_report`` on runs whose outcome is set in SQL (set-based, like a big run would leave
it): every figure equals the independent computation of ``report_oracle``, and the figures
the fixture was built to produce are the ones reported."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from octopipe.engine.paths import RunPaths
from octopipe.engine.report import run_report
from octopipe.errors import UsageError
from support.report_oracle import assert_matches, expected_report
from support.report_runs import build


@pytest.fixture
def run(tmp_path: Path) -> RunPaths:
    return build(tmp_path)


def test_every_figure_equals_the_independent_computation(run: RunPaths) -> None:
    report = run_report(run).to_dict()
    assert_matches(report, expected_report(run.ledger))


def test_the_fixture_outcomes_are_the_ones_reported(run: RunPaths) -> None:
    """The figures the fixture was built to produce, counted here by hand from its rules."""
    report = run_report(run).to_dict()
    prep, split, judge, after = report["steps"]
    assert (prep["input"], prep["valid"], prep["failed"]) == (60, 57, 3)  # n = 7, 27, 47
    assert prep["failed_by_stage"] == {"expression": 3}
    assert prep["max_iterations"] == 4
    assert prep["errors"] == [
        {
            "stage": "expression",
            "message": "division by zero",
            "units": 3,
            "samples": ["item007", "item047"],  # the first and last with that message
        }
    ]
    assert (split["input"], split["valid"], split["failed"]) == (57, 54, 3)  # n = 3, 28, 53
    # fanned out: 54 parents; n % 10 == 0 -> no children (6), others 2 or 3 parts
    children = sum(
        0 if n % 10 == 0 else 3 if n % 15 == 0 or n % 2 else 2
        for n in range(60)
        if n % 20 != 7 and n % 25 != 3
    )
    assert split["fan_out"]["children"] == children == judge["input"]
    assert split["fan_out"]["fanned_out"] == 54
    assert split["errors"][0]["message"] == "fan-out field '<s>' is missing, not a list"
    exhausted, second = _children(run, "uid % 7 = 0"), _children(run, "uid % 7 = 1")
    assert judge["failed"] == exhausted and judge["retrying"] == _children(run, "uid % 7 = 2")
    assert judge["retries"]["units"] == exhausted + second
    assert judge["retries"]["extra_attempts"] == 2 * exhausted + second
    assert judge["models"] == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    messages = {e["message"] for e in judge["attempt_errors"]}
    assert messages == {
        "score <n> is below <n>",
        "Expecting value: line <n> column <n> (char <n>)",
        "openai: overloaded, request <id> (HTTP <n>)",
    }
    assert after["failed_by_stage"] == {"expression": after["failed"]} and after["failed"]
    assert report["total"]["cost"]["unknown_cost_calls"] > 0
    assert report["total"]["cost"]["usd"] is None  # some calls have no known price
    assert report["cost_per_valid_unit"] is None
    assert report["elapsed_s"] == 3600.0


def _children(run: RunPaths, where: str) -> int:
    db = sqlite3.connect(run.ledger)
    try:
        return db.execute(
            f"SELECT COUNT(*) FROM units WHERE origin_step = 2 AND {where}"
        ).fetchone()[0]
    finally:
        db.close()


def test_failures_by_a_field_follow_the_record_at_each_step(run: RunPaths) -> None:
    """``category`` comes from the items, but prep rewrote it to "z" for n % 15 == 0: from
    split on, those units count under "z"."""
    report = run_report(run, failures_by="category").to_dict()
    assert_matches(report, expected_report(run.ledger, failures_by="category"))
    prep, split, judge, _ = report["steps"]
    assert {r["value"] for r in prep["failures_by"]} == {"a", "b", "c"}
    assert "z" in {r["value"] for r in judge["failures_by"]}
    failing = {r["value"]: r["failed"] for r in split["failures_by"]}
    assert failing == {"a": 1, "b": 1, "c": 1, "z": 0}  # n = 3, 28 and 53 failed there


def test_failures_by_a_field_no_record_has_is_refused_naming_the_fields(run: RunPaths) -> None:
    with pytest.raises(UsageError) as info:
        run_report(run, failures_by="colour")
    message = str(info.value)
    assert message.startswith("--failures-by 'colour': neither the failing units' records")
    assert "(fields of the first unit: unit_id, name, n, category, parts)" in message


def test_top_limits_the_error_groups_and_counts_them_all(run: RunPaths) -> None:
    report = run_report(run, top=1).to_dict()
    judge = report["steps"][2]
    assert len(judge["attempt_errors"]) == 1 and judge["attempt_error_groups"] == 3
    assert_matches(report, expected_report(run.ledger, top=1))


def test_unknown_prices_stay_unknown_never_zero(tmp_path: Path) -> None:
    run = build(tmp_path, unpriced=True)
    report = run_report(run).to_dict()
    assert_matches(report, expected_report(run.ledger))
    total = report["total"]["cost"]
    assert total == {
        "usd": None,
        "known_usd": 0.0,
        "unknown_cost_calls": total["unknown_cost_calls"],
    }
    assert total["unknown_cost_calls"] == report["total"]["calls"] > 0
    assert report["cost_per_valid_unit"] is None and report["retry_cost_share"] is None
    assert report["steps"][2]["cost_per_valid_unit"] is None


def test_a_run_made_before_the_report_index_reads_the_same(run: RunPaths) -> None:
    """A ledger without migration 0003 (made by an older octopipe, so without the later
    0004 either) opens read-only for the report and gives the same figures; the next writer
    builds the index."""
    before = run_report(run).to_dict()
    db = sqlite3.connect(run.ledger)
    db.executescript(
        # nor the cost per model and tier (0007_cost_groups: a table and its triggers naming the tier)
        "DROP TABLE cost_groups; DROP TRIGGER IF EXISTS cost_groups_insert; "
        "DROP TRIGGER cost_groups_update; DROP TRIGGER cost_groups_delete; "
        "DROP INDEX attempts_by_step; DROP TABLE runners;"
        "ALTER TABLE unit_steps DROP COLUMN claimed_by;"
        # an older octopipe had no later migration either (0005_attempt_tiers: two columns)
        "ALTER TABLE attempts DROP COLUMN tier; ALTER TABLE attempts DROP COLUMN standard_cost_usd;"
        # nor the maintained totals (0006_attempt_totals: a table and its triggers)
        "DROP TABLE attempt_totals; DROP TRIGGER IF EXISTS attempt_totals_insert; "
        "DROP TRIGGER attempt_totals_update; DROP TRIGGER attempt_totals_delete; "
        "DELETE FROM migrations WHERE seq >= 3;"  # 0003_attempts_by_step and every later one
        "PRAGMA user_version = 2;"
    )
    db.close()
    assert run_report(run).to_dict() == before
    from octopipe.store.ledger import Ledger

    Ledger.open(run.ledger).close()
    db = sqlite3.connect(run.ledger)
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    db.close()
    assert "attempts_by_step" in names


def _set_running(run: RunPaths, updated_at: str) -> None:
    db = sqlite3.connect(run.ledger)
    db.execute(
        "UPDATE run SET status = 'running', finished_at = NULL, updated_at = ?", (updated_at,)
    )
    db.commit()
    db.close()


def test_a_live_run_is_timed_to_now(run: RunPaths) -> None:
    from datetime import UTC, datetime

    from octopipe.store.lock import RunLock

    _set_running(run, "2025-03-01T10:05:00.000Z")
    lock = RunLock(run.root)
    assert lock.try_acquire()
    try:
        now = datetime(2025, 3, 1, 10, 20, tzinfo=UTC)
        report = run_report(run, now=now).to_dict()
    finally:
        lock.release()
    assert report["status"] == "running" and report["finished_at"] is None
    assert report["elapsed_s"] == 1200.0  # 10:00 to now, 10:20
    assert report["units_per_s"] == pytest.approx(report["units_done"] / 1200.0)


def test_a_detached_run_is_timed_to_its_last_status_change(run: RunPaths) -> None:
    from datetime import UTC, datetime

    _set_running(run, "2025-03-01T10:05:00.000Z")
    report = run_report(run, now=datetime(2025, 3, 2, tzinfo=UTC)).to_dict()
    assert report["status"] == "detached"
    assert report["elapsed_s"] == 300.0  # 10:00 to 10:05, not to now
