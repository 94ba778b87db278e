"""``status`` and ``ps``: read-only views of runs. Kept light: no pipeline parsing imported.

Words and money are shown the same way everywhere: ``retrying`` (another attempt is due) and
``failed`` (no attempt left), as in ``--json``; amounts through ``core.amounts.format_usd``
(significant digits below a dollar, so $0.0018 is not shown as $0.00), and a cost that is not
known (a model without a price) says ``unknown`` instead of a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from octopipe.cli.options import runs_dir_option, runs_dir_or_default
from octopipe.cli.output import console, err_console, print_json
from octopipe.core.amounts import format_usd
from octopipe.engine.paths import RunPaths, resolve_run
from octopipe.engine.queries import RunStatusView, list_runs, run_status
from octopipe.errors import EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    from octopipe.engine.postprocess import PostReport


def cost_text(known_usd: float, unknown_calls: int) -> str:
    """``$0.0018``; ``unknown`` when no call had a price; ``$0.0018 + unknown`` when some did."""
    if not unknown_calls:
        return format_usd(known_usd)
    if not known_usd:
        return "unknown"
    return f"{format_usd(known_usd)} + unknown"


@click.command()
@click.argument("run_name", metavar="RUN")
@runs_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(run_name: str, runs_dir: Path | None, as_json: bool) -> int:
    """Where a run stands: per step, units pending, in flight, valid, failed; cost; liveness."""
    view = run_status(resolve_run(run_name, runs_dir_or_default(runs_dir)), costs=True)
    if as_json:
        print_json(view.to_dict())
    else:
        _print_status(view)
    return EXIT_OK


def _print_status(view: RunStatusView, *, post: bool = True) -> None:
    live = f"runner pid {view.runner_pid}" if view.live else "no runner"
    reason = f" ({view.reason})" if view.reason else ""
    console.print(
        f"[bold]{view.name}[/bold] [{view.pipeline}] {view.status}{reason}; {view.mode}; {live}"
    )
    table = Table(box=None, pad_edge=False)
    for column in ("step", "scope", "pending", "in flight", "valid", "retrying", "failed"):
        table.add_column(column, justify="left" if column in ("step", "scope") else "right")
    for step in view.steps:
        table.add_row(
            step.name,
            step.scope,
            f"{step.pending:,}",
            f"{step.in_flight:,}",
            f"{step.valid:,}",
            f"{step.retrying:,}",
            f"{step.failed:,}",
        )
    console.print(table)
    for step in view.steps:
        if step.max_iterations:
            console.print(
                f"[yellow]{step.name}: {step.max_iterations:,} unit(s) reached max_iterations"
                "[/yellow]"
            )
    unknown = (
        f" ({view.unknown_cost_attempts:,} calls of unknown cost)"
        if view.unknown_cost_attempts
        else ""
    )
    console.print(
        f"cost {cost_text(view.known_cost_usd, view.unknown_cost_attempts)}{unknown}; "
        f"tokens in {view.input_tokens:,}, out {view.output_tokens:,}",
        markup=False,
    )
    if view.costs is not None:
        print_cost_split(view.costs)
    if view.prices:
        console.print(f"priced by {prices_text(view.prices)}", markup=False)
    if len(view.price_history) > 1:  # sessions priced by different sources show each
        for record in view.price_history:
            started = record.get("session_started_at", "before the history")
            console.print(f"  session {started}: {prices_text(record)}", markup=False)
    _print_batches(view)
    if post:
        print_post_states(view.name, view.post)


def _usd(value: float | None) -> str:
    return "unknown" if value is None else format_usd(value)


def print_cost_split(costs: dict[str, Any]) -> None:
    """Cost by model and tier, what the same answers cost in realtime at standard prices,
    and the saving (``cost_split.CostSplit.to_dict``); nothing when no call was answered."""
    rows = costs.get("by_model_and_tier") or []
    if not rows:
        return
    table = Table(box=None, pad_edge=False)
    for column in ("model", "tier", "calls", "tokens in", "tokens out", "cost", "at standard"):
        table.add_column(column, justify="left" if column in ("model", "tier") else "right")
    table.add_column("saving", justify="right")
    for row in rows:
        cost = row["cost_usd"]
        shown = (
            _usd(cost)
            if cost is not None or not row["known_cost_usd"]
            else (f"{format_usd(row['known_cost_usd'])} + unknown")
        )
        table.add_row(
            row["model"],
            row["tier"],
            f"{row['calls']:,}",
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            shown,
            _usd(row["standard_cost_usd"]),
            _usd(row["saving_usd"]),
        )
    console.print(
        "cost by model and tier (at standard: the same answers in realtime at standard prices):",
        markup=False,
    )
    console.print(table)
    if len(rows) > 1:
        console.print(
            f"total {_usd(costs['cost_usd'])}, at standard {_usd(costs['standard_cost_usd'])}, "
            f"saving {_usd(costs['saving_usd'])}",
            markup=False,
        )


def prices_text(prices: dict[str, Any]) -> str:
    """``genai-prices 0.0.x (bundled data)`` and the price files in front of it."""
    files = [
        f"{f['file']} (sha256 {str(f.get('sha256'))[:12]})" for f in prices.get("price_files") or []
    ]
    return str(prices.get("database")) + (f" with {', '.join(files)}" if files else "")


def print_post_states(run: str, states: list[dict[str, Any]]) -> None:
    """The run's post-processing as the ledger last recorded it: each action, its state,
    its output (relative to the run folder) or why not, and whether it is stale."""
    if not states:
        return
    console.print("post-processing:", markup=False)
    width = max(len(s["name"]) for s in states)
    for s in states:
        state = s["state"]
        if s["stale"]:
            state += f" (stale: the results changed since; `octopipe post {run}` re-runs it)"
        where = s["output"] if s["state"] in ("ok", "failed") and s["output"] else ""
        detail = s["detail"] if s["state"] != "ok" or not where else ""
        text = "  ".join(x for x in (where, detail or "") if x)
        console.print(f"  {s['name']:<{width}}  {s['kind']:<10}  {state}  {text}", markup=False)


def print_post_report(paths: RunPaths, report: PostReport) -> None:
    """What post-processing did at the end of a run (or ``octopipe post``)."""
    counts = ", ".join(
        f"{n} {word}"
        for word in ("ok", "failed", "skipped", "interrupted")
        if (n := report.count(word))
    )
    console.print(f"post-processing: {counts}", markup=False)
    width = max(len(a.action.name) for a in report.actions)
    for a in report.actions:
        written = a.output and a.outcome in ("ok", "failed") and (paths.root / a.output).exists()
        where = f"{paths.root / a.output}" if written and a.output else ""
        detail = a.detail if a.outcome != "ok" or not where else ""
        text = "  ".join(x for x in (where, detail or "") if x)
        console.print(f"  {a.action.name:<{width}}  {a.outcome:<8}  {text}", markup=False)


OPEN_BATCHES_SHOWN = 20


def _print_batches(view: RunStatusView) -> None:
    if not view.batch_counts:
        return
    states = ", ".join(f"{n:,} {state}" for state, n in view.batch_counts.items())
    console.print(f"batches: {states}", markup=False)
    if not view.open_batches:
        return
    table = Table(box=None, pad_edge=False)
    for column in ("batch", "step", "state", "at provider", "units", "provider id", "submitted"):
        table.add_column(column, justify="right" if column == "units" else "left")
    for b in view.open_batches[:OPEN_BATCHES_SHOWN]:
        table.add_row(
            b["batch"],
            b["step"],
            b["state"],
            b["at_provider"] or "-",
            f"{b['units']:,}",
            b["provider_batch_id"] or "-",
            (b["submitted_at"] or "-")[:19],
        )
    console.print(table)
    hidden = len(view.open_batches) - OPEN_BATCHES_SHOWN
    if hidden > 0:
        console.print(f"... and {hidden:,} more open batches (`status --json` lists all)")


def tiers_text(tiers: list[dict[str, Any]]) -> str:
    """The tiers that served a run's calls, costliest first, each with its share of the known
    cost when the run mixes tiers (``batch 80%, flex 20%``); ``-`` before any call."""
    if len(tiers) <= 1:
        return tiers[0]["tier"] if tiers else "-"
    known = sum(t["known_cost_usd"] for t in tiers)
    if not known:
        return ", ".join(t["tier"] for t in tiers)
    return ", ".join(f"{t['tier']} {t['known_cost_usd'] / known:.0%}" for t in tiers)


@click.command()
@runs_dir_option
@click.option("--all", "include_archived", is_flag=True, help="Include archived runs.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def ps(runs_dir: Path | None, include_archived: bool, as_json: bool) -> int:
    """List runs with their status, progress, units, cost and mode.

    A run whose ledger cannot be read is listed as ``unreadable`` with the reason (and the
    command exits 1); the other runs are listed all the same."""
    views = list_runs(runs_dir_or_default(runs_dir), include_archived)
    bad = [v for v in views if v.error is not None]
    if as_json:
        print_json([v.to_dict() for v in views])
        return EXIT_FAILURE if bad else EXIT_OK
    table = Table(box=None, pad_edge=False)
    for column in (
        "run",
        "pipeline",
        "status",
        "progress",
        "units",
        "valid",
        "failed",
        "cost",
        "tiers",
        "mode",
        "updated",
    ):
        table.add_column(column)
    for v in views:
        name = f"{v.name} (archived)" if v.archived else v.name
        if v.error is not None:
            table.add_row(name, "?", v.status, "-", "-", "-", "-", "-", "-", "-", "-")
            continue
        table.add_row(
            name,
            v.pipeline,
            v.status,
            f"{v.progress:.0%}",
            f"{v.units:,}",
            f"{v.valid:,}",
            f"{v.failed:,}",
            cost_text(v.known_cost_usd, v.unknown_cost_attempts),
            tiers_text(v.cost_by_tier),
            v.mode,
            v.updated_at[:19],
        )
    console.print(table)
    good = [v for v in views if v.error is None]
    total = cost_text(
        sum(v.known_cost_usd for v in good), sum(v.unknown_cost_attempts for v in good)
    )
    console.print(f"{len(views)} run(s); total cost {total}", markup=False)
    for v in bad:
        err_console.print(f"warning: run {v.name} cannot be read: {v.error}", markup=False)
    return EXIT_FAILURE if bad else EXIT_OK
