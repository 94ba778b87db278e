"""Benchmark: the TUI's work with 500 runs and one 1,000,000-unit run (issue 12's bars).

Builds the runs fast: the big run with `octopipe init` (its units), then its step states
filled set-based in SQL like a run mid-way (walk all valid; classify 97% valid, 1% exhausted
at rules, 1% in flight, 1% not reached), each unit that reached classify with its attempt; the small
runs are copies of one `octopipe init` run of 10 units, renamed in their ledgers. Then times,
through the TUI's port (the calls its screens make, in the worker threads):

- dashboard refresh work: the first read of every run (cold), a refresh when nothing changed,
  a refresh after one run changed, and the dashboard's table filled in a headless app;
- run detail open: the big run's overview (row, funnel, failures by stage), its first page of
  units and the log tail, and the same screen opened in a headless app until its units show;
- filters over the million units: exhausted at the LLM step, exhausted at rules, in flight, an id
  prefix, and a filter nothing matches (the worst case: the whole step is looked at).

    python bench/tui_1m.py [--runs 500] [--units 1000000]

Bars: a dashboard refresh <= 100 ms of work, a run detail opens in <= 1 s, a filter over a
million units answers in <= 1 s. Prints JSON (seconds; best of 3 where repeated).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from million_run import PIPELINE, init_run, pass_walk

from octopipe.core.states import UnitStepState
from octopipe.tui.app import build_app
from octopipe.tui.format import row_cells
from octopipe.tui.port import RunControl, RunQueries


def fill(ledger: Path) -> None:
    db = sqlite3.connect(ledger)
    db.execute("BEGIN")
    pass_walk(db)
    db.execute("""INSERT INTO unit_steps(step_idx, uid, state, attempts, output_json,
                                         last_stage, last_error, updated_at)
        SELECT 1, uid, CASE WHEN uid % 100 = 0 THEN 'exhausted'
                            WHEN uid % 100 = 1 THEN 'in_flight' ELSE 'valid' END, 1,
               CASE WHEN uid % 100 > 1 THEN '{"label":"x"}' END,
               CASE WHEN uid % 100 = 0 THEN 'rules' END,
               CASE WHEN uid % 100 = 0 THEN 'label not allowed' END, 'T'
        FROM units WHERE uid % 100 != 2""")
    db.execute("""INSERT INTO attempts(uid, step_idx, attempt_no, mode, outcome, stage,
                                       errors_json)
        SELECT uid, 1, 1, 'realtime', CASE WHEN state = 'valid' THEN 'valid' ELSE 'failed' END,
               last_stage,
               CASE WHEN last_stage IS NULL THEN '[]' ELSE '[{"message":"label not allowed"}]' END
        FROM unit_steps WHERE step_idx = 1 AND state != 'in_flight'""")
    db.execute("""UPDATE unit_steps SET last_attempt_id =
        (SELECT id FROM attempts a WHERE a.uid = unit_steps.uid AND a.step_idx = 1)
        WHERE step_idx = 1 AND state = 'exhausted'""")
    db.execute("UPDATE run SET status = 'paused', status_reason = 'paused by request'")
    db.commit()
    db.close()


def copies(runs: Path, template: Path, n: int) -> None:
    for i in range(n):
        name = f"small{i:04d}"
        shutil.copytree(template, runs / name)
        db = sqlite3.connect(runs / name / "ledger.db")
        db.execute("UPDATE run SET name = ?, display_name = ?", (name, name))
        db.commit()
        db.close()


def best(fn: Callable[[], Any], times: int = 3) -> tuple[float, Any]:
    out: Any = None
    seconds = []
    for _ in range(times):
        start = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - start)
    return round(min(seconds), 4), out


def dashboard_figures(queries: RunQueries, runs: Path) -> dict[str, Any]:
    start = time.perf_counter()
    rows = queries.dashboard()
    cold = time.perf_counter() - start
    warm, _ = best(queries.dashboard)

    def one_changed() -> Any:
        db = sqlite3.connect(runs / "small0000" / "ledger.db")
        db.execute("UPDATE run SET display_name = display_name || 'x'")
        db.commit()
        db.close()
        start = time.perf_counter()
        queries.dashboard()
        return time.perf_counter() - start

    changed = min(one_changed() for _ in range(3))
    cells, _ = best(lambda: [row_cells(r) for r in rows])
    return {
        "runs_shown": len(rows),
        "dashboard_first_read_s": round(cold, 3),
        "dashboard_refresh_unchanged_s": warm,
        "dashboard_refresh_one_changed_s": round(changed, 4),
        "dashboard_cells_s": cells,
    }


def detail_figures(queries: RunQueries) -> dict[str, Any]:
    def open_detail() -> Any:
        row, stages = queries.overview("big")
        page = queries.units("big", 1)
        queries.log("big")
        return row, stages, page

    seconds, (row, stages, page) = best(open_detail)
    report_s, _ = best(lambda: queries.report("big"), times=1)
    return {
        "big_run_units": row.view.units,
        "run_detail_open_s": seconds,
        "run_detail_failed_by_stage": stages.get("classify", {}),
        "run_detail_first_page_rows": len(page),
        "run_report_s": report_s,  # loaded after the screen shows
    }


def filter_figures(queries: RunQueries) -> dict[str, Any]:
    first = queries.units("big", 1, limit=1)[0]
    prefix = first.unit_id[: max(1, len(first.unit_id) - 3)]
    cases: dict[str, dict[str, Any]] = {
        "exhausted": {"states": (UnitStepState.EXHAUSTED,)},
        "exhausted_at_rules": {"states": (UnitStepState.EXHAUSTED,), "stage": "rules"},
        "in_flight": {"states": (UnitStepState.IN_FLIGHT,)},
        "id_prefix": {"prefix": prefix},
        "matching_nothing": {"states": (UnitStepState.EXHAUSTED,), "stage": "render"},
    }
    out: dict[str, Any] = {}
    for label, kwargs in cases.items():
        seconds, page = best(lambda kwargs=kwargs: queries.units("big", 1, **kwargs))
        out[f"filter_{label}_s"] = seconds
        out[f"filter_{label}_rows"] = len(page)
    return out


async def headless(runs: Path, pipelines: Path) -> dict[str, Any]:
    """The same reads as the screens make them, in the app: rows applied to the dashboard's
    table, and the run detail opened until its first units are in the table."""
    app = build_app(RunQueries(runs, pipelines), RunControl(runs), refresh_s=3600)
    out: dict[str, Any] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        while not app.screen.query_one("#runs").row_count:
            await asyncio.sleep(0.05)
        rows = app.queries.dashboard()
        start = time.perf_counter()
        app.screen.apply_rows(rows)
        out["dashboard_table_update_s"] = round(time.perf_counter() - start, 4)
        from octopipe.tui.screens.run_detail import RunDetailScreen

        start = time.perf_counter()
        await app.push_screen(RunDetailScreen("big"))
        while not (app.screen.query("#units") and app.screen.query_one("#units").row_count):
            await asyncio.sleep(0.01)
        out["run_detail_screen_open_s"] = round(time.perf_counter() - start, 3)
        await pilot.pause()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--units", type=int, default=1_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="octopipe-tui-bench-"))
    runs = root / "runs"
    try:
        start = time.perf_counter()
        init_run(runs, "big", args.units)
        fill(runs / "big" / "ledger.db")
        init_run(root / "template", "small", 10)
        copies(runs, root / "template" / "small", args.runs)
        results: dict[str, Any] = {
            "runs": args.runs + 1,
            "units": args.units,
            "build_s": round(time.perf_counter() - start, 1),
        }
        queries = RunQueries(runs, PIPELINE.parent)
        results |= dashboard_figures(queries, runs)
        results |= detail_figures(queries)
        results |= filter_figures(queries)
        results |= asyncio.run(headless(runs, PIPELINE.parent))
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
