"""``octopipe compare``: runs side by side, from the same read-only queries as ``report``.

For each run: pipeline, provider/model, mode, status, units, valid, failed, pass rate per
step, retries, tokens, cost, cost per valid unit, duration. Steps are lined up by name (the
union of the runs' steps, in the order they first appear); a run without a step shows none.

Shared analysis tables. A run's post-processing analysis (the built-in ``analyze_results``)
is not read here: ``compare_runs`` takes an ``AnalysisSource`` -- a function giving the
analysis tables of one run -- and puts side by side every table that *all* the runs have
(same ``AnalysisTable.key``: the same analysis asked the same way, e.g. the same Blackjack
strategies played by two models). Without a source there is no such section; nothing is
shown as an analysis that did not come from one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from octopipe.engine.paths import RunPaths
from octopipe.engine.report import RunReport, run_report, significant


@dataclass(frozen=True)
class AnalysisTable:
    """One analysis table of a run: ``key`` says which analysis it is (runs whose tables
    have the same key are comparable), ``columns[0]`` is the group (e.g. ``strategy``)."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


AnalysisSource = Callable[[RunPaths], Sequence[AnalysisTable]]


@dataclass(frozen=True)
class SharedAnalysis:
    """One analysis every run has, merged on its group column: ``columns`` is the group,
    then each other column once per run (``"net_wins [run-a]"``); ``rows`` one per group
    value seen in any run (``None`` where a run has no such group)."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass
class Comparison:
    reports: list[RunReport]
    steps: list[str]
    analyses: list[SharedAnalysis] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "runs": [run_summary(r, self.steps) for r in self.reports],
            "steps": self.steps,
        }
        if self.analyses:
            data["analysis"] = [
                {"key": a.key, "title": a.title, "columns": list(a.columns), "rows": a.rows}
                for a in self.analyses
            ]
        return data


def compare_runs(runs: Sequence[RunPaths], *, analysis: AnalysisSource | None = None) -> Comparison:
    reports = [run_report(paths, errors=False) for paths in runs]
    steps = list(dict.fromkeys(s.name for r in reports for s in r.steps))
    shared = shared_analyses(runs, [r.name for r in reports], analysis) if analysis else []
    return Comparison(reports, steps, shared)


def run_summary(report: RunReport, steps: Sequence[str]) -> dict[str, Any]:
    by_name = {s.name: s for s in report.steps}
    total = report.usage
    retries = report.retries
    return {
        "run": report.name,
        "pipeline": report.pipeline,
        "status": report.status,
        "mode": report.mode,
        "provider": report.provider,
        "model": report.model,
        "models": report.models,
        "units": report.units,
        "valid": report.valid,
        "failed": report.failed,
        "pass_rate": {
            name: None if name not in by_name else _round(by_name[name].pass_rate) for name in steps
        },
        "yield": {
            name: None if name not in by_name else _round(by_name[name].yield_) for name in steps
        },
        "retries": {"units": retries.units, "extra_attempts": retries.extra_attempts},
        "input_tokens": total.input_tokens,
        "output_tokens": total.output_tokens,
        "cost": total.cost.to_dict(),
        "retry_cost": retries.usage.cost.to_dict(),
        "cost_per_valid_unit": significant(report.cost_per_valid_unit),
        "elapsed_s": None if report.elapsed_s is None else round(report.elapsed_s, 3),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def shared_analyses(
    runs: Sequence[RunPaths], names: Sequence[str], source: AnalysisSource
) -> list[SharedAnalysis]:
    """Every analysis table all ``runs`` have (by key, in the first run's order), merged."""
    tables = [{t.key: t for t in source(paths)} for paths in runs]
    common = [key for key in tables[0] if all(key in t for t in tables[1:])]
    return [merge_tables([t[key] for t in tables], names) for key in common]


def merge_tables(tables: Sequence[AnalysisTable], names: Sequence[str]) -> SharedAnalysis:
    """One table per run (same analysis) -> one table keyed by the group column."""
    first = tables[0]
    measures = list(dict.fromkeys(c for t in tables for c in t.columns[1:]))
    columns = [first.columns[0] if first.columns else "group"]
    columns += [f"{m} [{name}]" for m in measures for name in names]
    groups: dict[Any, None] = {}
    cells: list[dict[Any, dict[str, Any]]] = []
    for table in tables:
        by_group: dict[Any, dict[str, Any]] = {}
        for row in table.rows:
            if not row:
                continue
            groups.setdefault(row[0], None)
            by_group[row[0]] = dict(zip(table.columns[1:], row[1:], strict=False))
        cells.append(by_group)
    rows = tuple(
        (group, *(cells[i].get(group, {}).get(m) for m in measures for i in range(len(tables))))
        for group in groups
    )
    return SharedAnalysis(first.key, first.title, tuple(columns), rows)
