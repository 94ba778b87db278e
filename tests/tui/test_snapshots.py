"""Snapshots (pytest-textual-snapshot) of the main screens at 160x48 over the fixture runs:
dashboard, run detail, unit inspector, launcher.

The screens are made stable: every timestamp in the fixture ledgers is set to a fixed time
(in order, so durations and the log read as they would), latencies are fixed, and the app's
clock is frozen, so a live run's duration and ETA do not move. ``pytest --snapshot-update``
rewrites the SVGs under ``__snapshots__/`` after a deliberate change of a screen.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from octopipe.tui.app import OctopipeApp, build_app
from octopipe.tui.port import RunControl, RunQueries
from support.tui import Runs, settle

SIZE = (160, 48)
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
NOW = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
BASE = "2026-11-30 09:00:00"
# (table, column, seconds after BASE; the rowid is added so order is kept)
FROZEN = (
    ("run", "created_at", 0),
    ("run", "started_at", 5),
    ("run", "updated_at", 300),
    ("run", "finished_at", 300),
    ("attempts", "started_at", 60),
    ("attempts", "finished_at", 62),
    ("unit_steps", "updated_at", 62),
    ("events", "ts", 0),
    ("commands", "ts", 100),
    ("commands", "applied_at", 101),
    ("batches", "created_at", 30),
    ("batches", "submitted_at", 31),
    ("batches", "finished_at", 200),
)


def freeze_ledger(ledger: Path) -> None:
    """Give every timestamp of one fixture ledger a fixed value (test data, not the TUI)."""
    db = sqlite3.connect(ledger)
    try:
        for table, column, offset in FROZEN:
            db.execute(
                f"UPDATE {table} SET {column} = strftime('%Y-%m-%dT%H:%M:%fZ', '{BASE}', "
                f"'+' || ({offset} + rowid) || ' seconds') WHERE {column} IS NOT NULL"
            )
        db.execute("UPDATE attempts SET latency_ms = 1234 WHERE latency_ms IS NOT NULL")
        db.commit()
    finally:
        db.close()


@pytest.fixture
def frozen(runs: Runs) -> Runs:
    for ledger in runs.dir.glob("*/ledger.db"):
        freeze_ledger(ledger)
    for log in runs.dir.glob("*/run.log"):
        log.write_text(STAMP.sub("2026-11-30T09:00:00.000Z", log.read_text()))
    return runs


def make(runs: Runs, *, start_run: str | None = None) -> OctopipeApp:
    return build_app(
        RunQueries(runs.dir, runs.pipelines),
        RunControl(runs.dir),
        start_run=start_run,
        refresh_s=3600,  # one read on mount: no refresh between the read and the screenshot
        clock=lambda: NOW,
    )


async def _settled(pilot) -> None:
    await settle(pilot)
    await asyncio.sleep(0.05)
    await settle(pilot)
    pilot.app.clear_notifications()  # the API-key note depends on the environment
    await pilot.pause()


def test_dashboard(frozen: Runs, snap_compare) -> None:
    """Every run state, totals with an unknown cost, the cursor on the live run."""
    assert snap_compare(make(frozen), terminal_size=SIZE, run_before=_settled)


def test_run_detail(frozen: Runs, snap_compare) -> None:
    """The LLM run with failures by stage: funnel, stats, units, log."""
    assert snap_compare(make(frozen, start_run="judged"), terminal_size=SIZE, run_before=_settled)


def test_unit_inspector(frozen: Runs, snap_compare) -> None:
    """A unit whose answer failed a rule: its fields, the attempt and its raw answer."""

    async def open_unit(pilot) -> None:
        await _settled(pilot)
        from octopipe.tui.screens.unit import UnitScreen

        await pilot.app.push_screen(UnitScreen("judged", "item000"))
        await _settled(pilot)

    assert snap_compare(make(frozen, start_run="judged"), terminal_size=SIZE, run_before=open_unit)


def test_launcher(frozen: Runs, snap_compare) -> None:
    """N on the dashboard: pipelines read, the first picked, its run name made from the clock."""

    async def open_launcher(pilot) -> None:
        await _settled(pilot)
        await pilot.press("n")
        await _settled(pilot)

    assert snap_compare(make(frozen), terminal_size=SIZE, run_before=open_launcher)
