"""``octopipe tui --dump``: what the dashboard (or a run's detail) shows, printed without a
terminal and without importing Textual, from the same port and cells as the screens."""

from __future__ import annotations

import json
from typing import Any, TextIO

from octopipe.engine.browse import totals
from octopipe.tui.format import COLUMNS, cost_text, funnel_lines, row_cells, status_text, tokens
from octopipe.tui.port import RunQueries


def dashboard_data(queries: RunQueries, include_archived: bool = False) -> dict[str, Any]:
    rows = queries.dashboard(include_archived)
    return {
        "totals": totals(rows).to_dict(),
        "runs": [{**r.to_dict(), "cells": row_cells(r)} for r in rows],
    }


def run_data(queries: RunQueries, name: str) -> dict[str, Any]:
    row = queries.row(name)
    from octopipe.engine.browse import failed_by_stage

    stages = failed_by_stage(queries.paths(name))
    return {
        **row.to_dict(),
        "cells": row_cells(row),
        "funnel": funnel_lines(row, stages),
    }


def dump(
    queries: RunQueries,
    out: TextIO,
    *,
    run: str | None = None,
    as_json: bool = False,
    include_archived: bool = False,
) -> None:
    data = run_data(queries, run) if run else dashboard_data(queries, include_archived)
    if as_json:
        out.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    if run:
        _print_run(data, out)
    else:
        _print_dashboard(data, out)


def _table(headers: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _print_dashboard(data: dict[str, Any], out: TextIO) -> None:
    t = data["totals"]
    out.write(
        f"runs {t['runs']}  tokens {tokens(t['input_tokens'])} in / "
        f"{tokens(t['output_tokens'])} out  cost "
        f"{cost_text(t['known_cost_usd'], t['unknown_cost_runs'])}\n"
    )
    if not data["runs"]:
        out.write("no runs yet (N starts one in the TUI; or `octopipe run PIPELINE`)\n")
        return
    _table(
        [label for _, label in COLUMNS],
        [[r["cells"][key] for key, _ in COLUMNS] for r in data["runs"]],
        out,
    )


def _print_run(data: dict[str, Any], out: TextIO) -> None:
    out.write(
        f"run {data['name']} ({data['pipeline']}): {status_text(data['status'], data['reason'])}"
        f"; {data['cells']['progress']}; mode {data['mode']}; cost {data['cells']['cost']}\n"
    )
    pid = f", runner pid {data['runner_pid']}" if data.get("runner_pid") else ""
    out.write(f"live: {'yes' if data['live'] else 'no'}{pid}\n")
    rows = []
    for step in data["funnel"]:
        stages = ", ".join(f"{k} {v}" for k, v in sorted(step["failed_by_stage"].items()))
        rows.append(
            [
                step["step"],
                step["scope"],
                f"{step['input']:,}",
                f"{step['valid']:,}",
                f"{step['failed']:,}" + (f" ({stages})" if stages else ""),
                f"{step['retrying']:,}",
                f"{step['in_flight']:,}",
                f"{step['pending']:,}",
            ]
        )
    _table(
        ["step", "scope", "input", "valid", "failed", "retrying", "in flight", "pending"],
        rows,
        out,
    )
    for batch in data.get("open_batches", []):
        out.write(
            f"batch {batch['batch']} ({batch['step']}): {batch['state']}"
            f" at provider {batch['at_provider'] or '-'}, {batch['units']} units\n"
        )
